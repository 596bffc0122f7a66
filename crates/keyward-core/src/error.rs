//! Why core refuses an input: one type per kind of input, one variant per
//! cause.
//!
//! The errors sit below every other module so that rules point one way:
//! `key`, `id` and `limits` return them, `model` builds on those, and
//! `verify` on `model`.

/// Why a string is not a well-formed key. One variant per cause so tests can
/// pin each; the HTTP layer reports them all as `MALFORMED`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyFormatError {
    #[error("key is longer than any valid key")]
    TooLong,
    #[error("key contains characters outside the key alphabet")]
    BadCharacter,
    #[error("key does not have the shape prefix_env_body")]
    BadShape,
    #[error("key prefix must be 1 to 12 characters of a-z and 0-9")]
    BadPrefix,
    #[error("key environment must be live, test or dev")]
    BadEnvironment,
    #[error("key body is not 43 base62 digits of a 32-byte number")]
    BadBody,
    #[error("key checksum does not match")]
    BadChecksum,
}

/// Why a string is not an id of the expected kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not a valid {kind} id")]
pub struct IdError {
    pub kind: &'static str,
}

/// Why a value given by a caller was refused. The HTTP layer maps every
/// variant to `INVALID_REQUEST` with this message, so no message holds the
/// value refused: it may be a key pasted into the wrong field. Each names
/// the field and what it accepts instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ValueError {
    #[error("scope must be 1 to 128 characters of a-z, A-Z, 0-9 and _ . : / * -")]
    Scope,
    /// Not a key role's name.
    #[error("a role name must be 1 to 64 characters of a-z, A-Z, 0-9 and _ . : -")]
    RoleName,
    /// Not the name of an admin scope; `known` lists the names there are.
    #[error("unknown admin scope; admin scopes are {}", known.join(", "))]
    AdminScope { known: &'static [&'static str] },
    #[error("{field} must be 1 to {max} characters with no control characters")]
    Text { field: &'static str, max: usize },
    /// The value holds an API key or admin token. Text fields are stored and
    /// shown in listings and the audit log, where no key may end up.
    #[error("{field} must not contain an API key or admin token; if one was pasted here by mistake, rotate it")]
    KeyShaped { field: &'static str },
    #[error("metadata must be a JSON object of at most {max} bytes")]
    Metadata { max: usize },
    #[error("rate limits need unique names (a-z, 0-9, _ . -), a limit of 1 to 1e9 and a duration_ms of 1 ms to 31 days; at most 8")]
    RateLimit,
    #[error("a refill needs an interval (daily or monthly), an amount, and for monthly refills a day of 1 to 28")]
    Refill,
    #[error("IP allowlist entries must be IPv4 or IPv6 addresses or CIDR ranges; at most 256")]
    Cidr,
    /// A workspace or role name.
    #[error(
        "{field} must be 1 to 63 characters of a-z, 0-9, _ and -, starting with a letter or digit"
    )]
    Name { field: &'static str },
    #[error("email must be an address such as ops@example.com, at most 254 characters")]
    Email,
    #[error("password must be {min} to {max} characters")]
    PasswordLength { min: usize, max: usize },
    #[error("password is one of the most common passwords: choose another")]
    PasswordCommon,
    #[error("unknown role; built-in roles are {}, and custom roles are listed by GET /v1/roles", known.join(", "))]
    Role { known: &'static [&'static str] },
    /// A value of a fixed shape, named by its field, is not of it.
    #[error("{field} must be {expected}")]
    Invalid {
        field: &'static str,
        expected: &'static str,
    },
}
