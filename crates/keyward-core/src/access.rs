//! People and what they may do: admin users, the workspaces that hold
//! APIs, and the roles granted in them. Every role is a set of admin
//! scopes; a grant gives a role in one workspace (or all) and optionally
//! only some environments.
//!
//! Built-in roles:
//!
//! | role | scopes | environments |
//! |---|---|---|
//! | `owner` | every scope | all |
//! | `admin` | every scope but `sys:write` | all |
//! | `operator` | APIs, keys, verify, secrets, transit use, leak reports; reads tokens | all |
//! | `developer` | reads APIs; keys, verify, secrets, transit use | `test`, `dev` |
//! | `auditor` | every `:read` scope and `audit:read` | all |
//! | `read-only` | reads APIs, keys, tokens and users | all |

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::error::ValueError;
use crate::id::UserId;
use crate::key::Environment;
use crate::model::AdminScope;

/// The workspace every API starts in, and the one an upgrade moves existing
/// APIs to.
pub const DEFAULT_WORKSPACE: &str = "default";

/// A role every install has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BuiltinRole {
    Owner,
    Admin,
    Operator,
    Developer,
    Auditor,
    ReadOnly,
}

use AdminScope as S;

const OPERATOR: &[AdminScope] = &[
    S::ApisRead,
    S::ApisWrite,
    S::KeysRead,
    S::KeysWrite,
    S::KeysVerify,
    S::TokensRead,
    S::SecretsRead,
    S::SecretsWrite,
    S::TransitUse,
    S::LeaksReport,
];
const DEVELOPER: &[AdminScope] = &[
    S::ApisRead,
    S::KeysRead,
    S::KeysWrite,
    S::KeysVerify,
    S::SecretsRead,
    S::SecretsWrite,
    S::TransitUse,
];
const AUDITOR: &[AdminScope] = &[
    S::ApisRead,
    S::KeysRead,
    S::TokensRead,
    S::AuditRead,
    S::SecretsRead,
    S::UsersRead,
];
const READ_ONLY: &[AdminScope] = &[S::ApisRead, S::KeysRead, S::TokensRead, S::UsersRead];
const ADMIN: &[AdminScope] = &[
    S::ApisRead,
    S::ApisWrite,
    S::KeysRead,
    S::KeysWrite,
    S::KeysVerify,
    S::TokensRead,
    S::TokensWrite,
    S::AuditRead,
    S::SecretsRead,
    S::SecretsWrite,
    S::TransitUse,
    S::TransitWrite,
    S::LeaksReport,
    S::UsersRead,
    S::UsersWrite,
];

impl BuiltinRole {
    pub const ALL: [BuiltinRole; 6] = [
        BuiltinRole::Owner,
        BuiltinRole::Admin,
        BuiltinRole::Operator,
        BuiltinRole::Developer,
        BuiltinRole::Auditor,
        BuiltinRole::ReadOnly,
    ];

    pub const NAMES: [&'static str; 6] = [
        "owner",
        "admin",
        "operator",
        "developer",
        "auditor",
        "read-only",
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            BuiltinRole::Owner => "owner",
            BuiltinRole::Admin => "admin",
            BuiltinRole::Operator => "operator",
            BuiltinRole::Developer => "developer",
            BuiltinRole::Auditor => "auditor",
            BuiltinRole::ReadOnly => "read-only",
        }
    }

    pub fn parse(name: &str) -> Option<BuiltinRole> {
        BuiltinRole::ALL.into_iter().find(|r| r.as_str() == name)
    }

    /// The admin scopes the role holds.
    pub fn scopes(self) -> &'static [AdminScope] {
        match self {
            BuiltinRole::Owner => &AdminScope::ALL,
            BuiltinRole::Admin => ADMIN,
            BuiltinRole::Operator => OPERATOR,
            BuiltinRole::Developer => DEVELOPER,
            BuiltinRole::Auditor => AUDITOR,
            BuiltinRole::ReadOnly => READ_ONLY,
        }
    }

    /// The environments the role is confined to, whatever its grant says.
    pub fn environments(self) -> Option<&'static [Environment]> {
        match self {
            BuiltinRole::Developer => Some(&[Environment::Test, Environment::Dev]),
            _ => None,
        }
    }

    pub fn description(self) -> &'static str {
        match self {
            BuiltinRole::Owner => "everything, the seal and the keyring included",
            BuiltinRole::Admin => "everything but the seal, the keyring and mounts (sys:write)",
            BuiltinRole::Operator => {
                "APIs, keys and their limits, secrets and transit use; no users, no seal"
            }
            BuiltinRole::Developer => {
                "keys, secrets and transit use in the test and dev environments"
            }
            BuiltinRole::Auditor => "reads everything, the audit log included; changes nothing",
            BuiltinRole::ReadOnly => "reads APIs, keys, tokens and users",
        }
    }
}

/// A role granted to a user: in one workspace (`None`: every workspace)
/// and optionally only some environments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleGrant {
    pub role: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environments: Option<Vec<Environment>>,
}

/// The environments a grant of `role` reaches: those the grant names,
/// narrowed to those a built-in role is confined to.
pub fn grant_environments(
    role: Option<BuiltinRole>,
    named: Option<&[Environment]>,
) -> Option<Vec<Environment>> {
    match (role.and_then(BuiltinRole::environments), named) {
        (None, None) => None,
        (Some(allowed), None) => Some(allowed.to_vec()),
        (None, Some(named)) => Some(named.to_vec()),
        (Some(allowed), Some(named)) => Some(
            named
                .iter()
                .copied()
                .filter(|e| allowed.contains(e))
                .collect(),
        ),
    }
}

/// A user's grants expanded to scopes, with custom roles read from
/// `custom`. A grant of a role that no longer exists grants nothing.
pub fn expand_grants(
    grants: &[RoleGrant],
    custom: impl Fn(&str) -> Option<Vec<AdminScope>>,
) -> Vec<crate::model::Grant> {
    grants
        .iter()
        .filter_map(|g| {
            let builtin = BuiltinRole::parse(&g.role);
            let mut scopes = match builtin {
                Some(role) => role.scopes().to_vec(),
                None => custom(&g.role)?,
            };
            scopes.sort();
            scopes.dedup();
            Some(crate::model::Grant {
                role: g.role.clone(),
                scopes,
                workspace: g.workspace.clone(),
                environments: grant_environments(builtin, g.environments.as_deref()),
            })
        })
        .collect()
}

/// An admin user. The password hash and the TOTP secret stay in the store.
#[derive(Debug, Clone, PartialEq)]
pub struct User {
    pub id: UserId,
    /// The login name, lower-cased.
    pub email: String,
    pub grants: Vec<RoleGrant>,
    pub totp_enrolled: bool,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    pub disabled_at: Option<OffsetDateTime>,
    pub last_login_at: Option<OffsetDateTime>,
}

/// A role defined by the provider: a named set of admin scopes.
#[derive(Debug, Clone, PartialEq)]
pub struct CustomRole {
    pub name: String,
    pub scopes: Vec<AdminScope>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

/// A workspace: a group of APIs (a team, or a reseller's customer).
#[derive(Debug, Clone, PartialEq)]
pub struct Workspace {
    pub name: String,
    pub created_at: OffsetDateTime,
}

/// Checks a workspace or role name: a lower-case slug.
pub fn check_name(field: &'static str, name: &str) -> Result<(), ValueError> {
    let bytes = name.as_bytes();
    let ok = !bytes.is_empty()
        && bytes.len() <= 63
        && bytes[0].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_' || *b == b'-');
    if ok {
        Ok(())
    } else {
        Err(ValueError::Name { field })
    }
}

/// The login name for `email`: trimmed and lower-cased, when it has the
/// shape of an address.
pub fn normalize_email(email: &str) -> Result<String, ValueError> {
    let email = email.trim().to_lowercase();
    let valid = email.len() <= 254
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !domain.contains('@')
        })
        && !email.chars().any(|c| c.is_control() || c.is_whitespace())
        && !crate::key::contains_key(&email);
    if valid {
        Ok(email)
    } else {
        Err(ValueError::Email)
    }
}

pub const MIN_PASSWORD_CHARS: usize = 12;
pub const MAX_PASSWORD_CHARS: usize = 256;

/// Common passwords of 12 characters or more, from breach corpora's top
/// lists; compared case-insensitively.
const COMMON_PASSWORDS: &[&str] = &[
    "123456789012",
    "1234567890123",
    "12345678901234",
    "123456789123",
    "111111111111",
    "000000000000",
    "123123123123",
    "qwertyuiop12",
    "qwertyuiopas",
    "qwertyuiop123",
    "1q2w3e4r5t6y",
    "1qaz2wsx3edc",
    "zaq12wsxcde3",
    "password1234",
    "password12345",
    "password123!",
    "passwordpassword",
    "password1password1",
    "iloveyou1234",
    "letmein12345",
    "welcome12345",
    "welcome123456",
    "administrator",
    "administrator1",
    "changeme1234",
    "changemenow!",
    "trustno1trustno1",
    "abcdefghijkl",
    "abc123abc123",
    "abcd1234abcd",
    "football1234",
    "baseball1234",
    "sunshine1234",
    "princess1234",
    "superman1234",
    "starwars1234",
    "monkey123456",
    "dragon123456",
    "master123456",
    "michael12345",
    "qwerty123456",
    "qwertyqwerty",
    "asdfghjkl123",
    "asdfasdfasdf",
    "zxcvbnm12345",
    "passw0rd1234",
    "p@ssw0rd1234",
    "p@ssword1234",
    "correcthorsebatterystaple",
    "keywardkeyward",
];

/// Refuses a password under [`MIN_PASSWORD_CHARS`] characters, over the
/// maximum, or among the most common ones.
pub fn check_password(password: &str) -> Result<(), ValueError> {
    let chars = password.chars().count();
    if !(MIN_PASSWORD_CHARS..=MAX_PASSWORD_CHARS).contains(&chars) {
        return Err(ValueError::PasswordLength {
            min: MIN_PASSWORD_CHARS,
            max: MAX_PASSWORD_CHARS,
        });
    }
    let lower = password.to_lowercase();
    let first = lower.chars().next();
    let repeated = lower.chars().all(|c| Some(c) == first);
    if repeated || COMMON_PASSWORDS.contains(&lower.as_str()) {
        return Err(ValueError::PasswordCommon);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_nested_as_documented() {
        let has = |r: BuiltinRole, s| r.scopes().contains(&s);
        assert_eq!(BuiltinRole::Owner.scopes().len(), AdminScope::ALL.len());
        assert!(!has(BuiltinRole::Admin, S::SysWrite));
        for role in [BuiltinRole::Operator, BuiltinRole::Developer] {
            assert!(!has(role, S::UsersWrite) && !has(role, S::SysWrite));
        }
        for role in [BuiltinRole::Auditor, BuiltinRole::ReadOnly] {
            assert!(role.scopes().iter().all(|s| s.as_str().ends_with(":read")));
        }
        assert!(has(BuiltinRole::Auditor, S::AuditRead));
        assert!(!has(BuiltinRole::ReadOnly, S::AuditRead));
        for (role, name) in BuiltinRole::ALL.iter().zip(BuiltinRole::NAMES) {
            assert_eq!(role.as_str(), name);
            assert_eq!(BuiltinRole::parse(name), Some(*role));
        }
    }

    #[test]
    fn developers_never_reach_live() {
        let dev = Some(BuiltinRole::Developer);
        assert_eq!(
            grant_environments(dev, None),
            Some(vec![Environment::Test, Environment::Dev])
        );
        assert_eq!(
            grant_environments(dev, Some(&[Environment::Live, Environment::Test])),
            Some(vec![Environment::Test])
        );
        assert_eq!(grant_environments(Some(BuiltinRole::Admin), None), None);
    }

    #[test]
    fn passwords_short_or_common_are_refused() {
        assert!(check_password("short").is_err());
        assert!(check_password("Password1234").is_err());
        assert!(check_password("aaaaaaaaaaaaaaaa").is_err());
        assert!(check_password(&"x".repeat(MAX_PASSWORD_CHARS + 1)).is_err());
        assert!(check_password("plum-violet-harbor-42").is_ok());
    }

    #[test]
    fn emails_are_normalized_and_checked() {
        assert_eq!(
            normalize_email(" Ops@Example.COM ").unwrap(),
            "ops@example.com"
        );
        for bad in [
            "",
            "ops",
            "@example.com",
            "ops@example",
            "ops@.com",
            "a b@c.de",
            "ops@x@y.z",
        ] {
            assert!(normalize_email(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn names_are_slugs() {
        assert!(check_name("workspace", "default").is_ok());
        assert!(check_name("workspace", "team-a_2").is_ok());
        for bad in ["", "-a", "A", "a b", &"a".repeat(64)] {
            assert!(check_name("workspace", bad).is_err(), "{bad}");
        }
    }
}
