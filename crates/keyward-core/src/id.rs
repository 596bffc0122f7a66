//! Identifiers: a type tag, then 16 bytes in 22 base62 digits — six bytes of
//! milliseconds since the Unix epoch and ten random bytes.
//!
//! The time comes first so ids sort by creation, which gives stable cursor
//! pagination and index locality; the random part makes them unguessable
//! (ids are not secrets, but enumeration should not be free).

use std::fmt;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::base62;

// Defined with core's other errors; named here too, where it always was.
pub use crate::error::IdError;

const DIGITS: usize = 22;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $tag:literal, $kind:literal) => {
        $(#[$doc])*
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// A fresh id stamped with `now`.
            pub fn generate(now: OffsetDateTime) -> Result<Self, getrandom::Error> {
                Ok($name(format!("{}{}", $tag, fresh_digits(now)?)))
            }

            pub fn parse(s: &str) -> Result<Self, IdError> {
                let digits = s.strip_prefix($tag).ok_or(IdError { kind: $kind })?;
                if digits.len() == DIGITS && base62::decode::<16>(digits.as_bytes()).is_some() {
                    Ok($name(s.to_owned()))
                } else {
                    Err(IdError { kind: $kind })
                }
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(s: String) -> Result<Self, IdError> {
                $name::parse(&s)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

id_type!(
    /// Identifies an API (a product surface with its own key prefix).
    ApiId, "api_", "api"
);
id_type!(
    /// Identifies an API key.
    KeyId, "key_", "key"
);
id_type!(
    /// Identifies an admin token.
    TokenId, "tok_", "token"
);
id_type!(
    /// Identifies an audit event.
    EventId, "evt_", "event"
);
id_type!(
    /// Identifies an admin user.
    UserId, "usr_", "user"
);

/// The last id stamp this process handed out: milliseconds and the 80-bit
/// tail. Ids made within one millisecond (or while the clock stands still or
/// steps back) continue from it, so ids of one process sort in the order they
/// were made.
static LAST: std::sync::Mutex<(u64, u128)> = std::sync::Mutex::new((0, 0));

const TAIL_BITS: u32 = 80;

fn fresh_digits(now: OffsetDateTime) -> Result<String, getrandom::Error> {
    let millis = (now.unix_timestamp_nanos() / 1_000_000).clamp(0, (1 << 48) - 1) as u64;
    let mut random = [0u8; 16];
    getrandom::fill(&mut random[6..])?;
    let random = u128::from_be_bytes(random);
    let (millis, tail) = {
        let mut last = LAST
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let next = if millis > last.0 {
            (millis, random)
        } else {
            // Step forward by a random amount (1 to 2^32), so the next id is
            // still not guessable from this one.
            let step = (random & 0xffff_ffff) + 1;
            let tail = last.1 + step;
            if tail >> TAIL_BITS == 0 {
                (last.0, tail)
            } else {
                (last.0 + 1, random)
            }
        };
        *last = next;
        next
    };
    let bytes = ((u128::from(millis) << TAIL_BITS) | tail).to_be_bytes();
    // 22 digits always hold 16 bytes.
    Ok(base62::encode(&bytes, DIGITS).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_sort_by_time() {
        let early = KeyId::generate(OffsetDateTime::UNIX_EPOCH + time::Duration::days(1)).unwrap();
        let late = KeyId::generate(OffsetDateTime::UNIX_EPOCH + time::Duration::days(2)).unwrap();
        assert!(early < late);
        assert_eq!(KeyId::parse(early.as_str()), Ok(early.clone()));
        assert!(ApiId::parse(early.as_str()).is_err());
        assert!(KeyId::parse("key_short").is_err());
    }

    #[test]
    fn ids_made_in_one_millisecond_sort_in_the_order_made() {
        let now = OffsetDateTime::now_utc();
        let ids: Vec<KeyId> = (0..1000).map(|_| KeyId::generate(now).unwrap()).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
        // A clock that steps back does not break the order either.
        let earlier = KeyId::generate(now - time::Duration::seconds(5)).unwrap();
        assert!(ids[999] < earlier);
    }
}
