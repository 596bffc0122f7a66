//! Redis as the replay store: every node that shares it refuses a signed
//! request any of them saw. One `SET key 1 NX PX ttl` per signed request,
//! one round trip; Redis forgets the entry when its window has passed.

use keyward_service::StoreError;
use keyward_verify::ReplayStore;
use time::OffsetDateTime;

/// Signed requests remembered in Redis, under `kw:seen:` keys.
pub struct RedisReplay {
    connection: redis::aio::ConnectionManager,
}

impl RedisReplay {
    /// Connects to the Redis at `url` (`redis://host:port/db`, or
    /// `rediss://` for TLS). Fails when it cannot be reached now: a node
    /// told to share replays through Redis does not start without it.
    pub async fn connect(url: &str) -> Result<Self, redis::RedisError> {
        let client = redis::Client::open(url)?;
        let connection = redis::aio::ConnectionManager::new(client).await?;
        Ok(RedisReplay { connection })
    }
}

#[async_trait::async_trait]
impl ReplayStore for RedisReplay {
    async fn first_seen(
        &self,
        key: &str,
        id: &[u8; 32],
        expires_at: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let ttl_ms = (expires_at - now)
            .whole_milliseconds()
            .clamp(1, i128::from(u32::MAX)) as u64;
        let mut name = String::with_capacity(8 + key.len() + 1 + 64);
        name.push_str("kw:seen:");
        name.push_str(key);
        name.push(':');
        for b in id {
            name.push_str(&format!("{b:02x}"));
        }
        let mut connection = self.connection.clone();
        let set: Option<String> = redis::cmd("SET")
            .arg(&name)
            .arg(1)
            .arg("NX")
            .arg("PX")
            .arg(ttl_ms)
            .query_async(&mut connection)
            .await
            .map_err(|e| StoreError::Io(std::io::Error::other(e.to_string())))?;
        // `OK` when the key was set; nil when it existed: a replay.
        Ok(set.is_some())
    }

    fn name(&self) -> &'static str {
        "redis"
    }
}
