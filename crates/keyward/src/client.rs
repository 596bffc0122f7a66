//! The client commands: each is one admin API call, printed for people or,
//! with `--json`, as the server's JSON.

use std::io::{BufRead, IsTerminal};
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use percent_encoding::{utf8_percent_encode, AsciiSet, PercentEncode, NON_ALPHANUMERIC};
use reqwest::Method;
use serde_json::{json, Value};

use crate::output::outln;

/// How to reach the server; shared by every client command.
#[derive(Args)]
pub struct Conn {
    /// Server address.
    #[arg(
        long,
        env = "KEYWARD_ADDR",
        default_value = "http://127.0.0.1:8720",
        global = true
    )]
    addr: String,
    /// Admin token.
    #[arg(long, env = "KEYWARD_TOKEN", hide_env_values = true, global = true)]
    token: Option<String>,
    /// Print the server's JSON instead of a summary.
    #[arg(long, global = true)]
    json: bool,
}

impl Conn {
    /// The server as one command talks to it.
    fn connect(&self) -> anyhow::Result<Server<'_>> {
        Ok(Server {
            http: http_client()?,
            addr: &self.addr,
            token: self.token.as_deref(),
            json: self.json,
        })
    }
}

/// The server a client command talks to. All of the command's requests go
/// through its one HTTP client, so they share its connection pool instead
/// of each setting up a client and a connection of its own.
struct Server<'a> {
    http: reqwest::Client,
    /// Where the server listens, as given (`--addr`).
    addr: &'a str,
    /// The admin token, sent with every request that needs one.
    token: Option<&'a str>,
    /// Print the server's JSON instead of a summary.
    json: bool,
}

/// The HTTP client of one CLI run.
pub(crate) fn http_client() -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .build()
        .context("cannot set up the HTTP client")
}

#[derive(Args)]
pub struct ApisArgs {
    #[command(flatten)]
    conn: Conn,
    #[command(subcommand)]
    command: ApisCommand,
}

#[derive(Subcommand)]
enum ApisCommand {
    /// Create an API with its own key prefix.
    Create {
        #[arg(long)]
        name: String,
        /// 1–12 characters of a-z and 0-9.
        #[arg(long)]
        prefix: String,
        /// Environments keys may be issued in [default: live,test,dev].
        #[arg(long, value_delimiter = ',')]
        environments: Vec<String>,
    },
    /// List APIs.
    List,
    /// Show one API.
    Get { id: String },
}

#[derive(Args)]
pub struct KeysArgs {
    #[command(flatten)]
    conn: Conn,
    #[command(subcommand)]
    command: KeysCommand,
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Issue a key; its plaintext is printed this once.
    Create {
        #[arg(long)]
        api_id: String,
        /// live, test or dev.
        #[arg(long = "env")]
        environment: String,
        /// The identity the key belongs to (your customer).
        #[arg(long)]
        owner: String,
        #[arg(long)]
        name: Option<String>,
        /// A scope the key carries; repeat for several.
        #[arg(long = "scope")]
        scopes: Vec<String>,
        /// A JSON object returned by every verify.
        #[arg(long)]
        metadata: Option<String>,
        /// RFC 3339 time after which the key stops working.
        #[arg(long)]
        expires_at: Option<String>,
        #[command(flatten)]
        limits: LimitArgs,
    },
    /// List keys, a page at a time.
    List {
        #[arg(long)]
        api_id: Option<String>,
        #[arg(long)]
        owner: Option<String>,
        #[arg(long = "env")]
        environment: Option<String>,
        /// active, disabled, expired or revoked.
        #[arg(long)]
        state: Option<String>,
        #[arg(long)]
        cursor: Option<String>,
        #[arg(long)]
        limit: Option<u32>,
    },
    /// Show one key.
    Get { id: String },
    /// Change a key's name, scopes, metadata, expiry or enabled flag.
    Update {
        id: String,
        #[arg(long)]
        name: Option<String>,
        /// Replaces all scopes; repeat for several.
        #[arg(long = "scope")]
        scopes: Option<Vec<String>>,
        #[arg(long)]
        metadata: Option<String>,
        #[arg(long, conflicts_with = "no_expiry")]
        expires_at: Option<String>,
        /// Remove the expiry.
        #[arg(long)]
        no_expiry: bool,
        #[arg(long, conflicts_with = "disable")]
        enable: bool,
        #[arg(long)]
        disable: bool,
        #[command(flatten)]
        limits: LimitArgs,
        /// Remove all rate limits.
        #[arg(long, conflicts_with = "ratelimits")]
        no_ratelimits: bool,
        /// Make the key unmetered.
        #[arg(long, conflicts_with = "credits")]
        no_credits: bool,
        /// Remove the IP allowlist (any address may use the key).
        #[arg(long, conflicts_with = "ips")]
        any_ip: bool,
    },
    /// Issue a successor; the old key works for the grace period.
    Rotate {
        id: String,
        /// Seconds the old key keeps working (0 = it stops now).
        #[arg(long, default_value_t = 0)]
        grace: u64,
    },
    /// Revoke a key at once.
    Revoke {
        id: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Revoke every key matching all the given filters.
    BulkRevoke {
        #[arg(long)]
        owner: Option<String>,
        #[arg(long)]
        api_id: Option<String>,
        #[arg(long = "env")]
        environment: Option<String>,
        /// RFC 3339 time: keys created before it.
        #[arg(long)]
        created_before: Option<String>,
        #[arg(long)]
        scope: Option<String>,
        #[arg(long)]
        reason: String,
    },
    /// Verify a key. Pass `-` (or nothing) to read it from standard input,
    /// which keeps it out of shell history. Exits 0 only when VALID.
    Verify {
        key: Option<String>,
        /// A scope the key must carry; repeat for several.
        #[arg(long = "scope")]
        scopes: Vec<String>,
        /// The environment the key must belong to.
        #[arg(long = "env")]
        environment: Option<String>,
        /// The client's IP address, for keys with an allowlist.
        #[arg(long)]
        ip: Option<String>,
        /// Units this request counts against limits and credits.
        #[arg(long)]
        cost: Option<u64>,
    },
}

/// Limits of a key, as flags of `keys create` and `keys update`.
#[derive(Args)]
struct LimitArgs {
    /// A rate limit NAME:LIMIT:DURATION_MS, e.g. burst:10:1000; repeat for
    /// several (on update, replaces all).
    #[arg(long = "ratelimit", value_name = "NAME:LIMIT:MS")]
    ratelimits: Vec<String>,
    /// Usage credits available now.
    #[arg(long)]
    credits: Option<u64>,
    /// Refill of the credits: daily:AMOUNT or monthly:AMOUNT[:DAY].
    #[arg(long, requires = "credits")]
    refill: Option<String>,
    /// An address or CIDR range the key may be used from; repeat for
    /// several (on update, replaces all).
    #[arg(long = "ip", value_name = "CIDR")]
    ips: Vec<String>,
}

impl LimitArgs {
    /// Adds the limits given to a request body.
    fn apply(&self, body: &mut Value) -> anyhow::Result<()> {
        if !self.ratelimits.is_empty() {
            body["ratelimits"] = parse_ratelimits(&self.ratelimits)?;
        }
        if let Some(remaining) = self.credits {
            let mut credits = json!({ "remaining": remaining });
            if let Some(refill) = &self.refill {
                credits["refill"] = parse_refill(refill)?;
            }
            body["credits"] = credits;
        }
        if !self.ips.is_empty() {
            body["ip_allowlist"] = json!(self.ips);
        }
        Ok(())
    }
}

fn parse_ratelimits(specs: &[String]) -> anyhow::Result<Value> {
    let mut limits = Vec::new();
    for spec in specs {
        let parts: Vec<&str> = spec.split(':').collect();
        let [name, limit, duration] = parts.as_slice() else {
            bail!("--ratelimit {spec}: expected NAME:LIMIT:DURATION_MS");
        };
        let limit: u64 = limit
            .parse()
            .with_context(|| format!("--ratelimit {spec}: LIMIT"))?;
        let duration: u64 = duration
            .parse()
            .with_context(|| format!("--ratelimit {spec}: DURATION_MS"))?;
        limits.push(json!({ "name": name, "limit": limit, "duration_ms": duration }));
    }
    Ok(Value::Array(limits))
}

fn parse_refill(spec: &str) -> anyhow::Result<Value> {
    let parts: Vec<&str> = spec.split(':').collect();
    let (interval, amount, day) = match parts.as_slice() {
        [interval, amount] => (*interval, *amount, None),
        [interval, amount, day] => (*interval, *amount, Some(*day)),
        _ => bail!("--refill {spec}: expected daily:AMOUNT or monthly:AMOUNT[:DAY]"),
    };
    let amount: u64 = amount
        .parse()
        .with_context(|| format!("--refill {spec}: AMOUNT"))?;
    let mut refill = json!({ "interval": interval, "amount": amount });
    if let Some(day) = day {
        let day: u8 = day
            .parse()
            .with_context(|| format!("--refill {spec}: DAY"))?;
        refill["day"] = json!(day);
    }
    Ok(refill)
}

#[derive(Args)]
pub struct OwnersArgs {
    #[command(flatten)]
    conn: Conn,
    #[command(subcommand)]
    command: OwnersCommand,
}

#[derive(Subcommand)]
enum OwnersCommand {
    /// Show the rate limits shared by all keys of an owner.
    Ratelimits { owner: String },
    /// Set (replace) the rate limits shared by all keys of an owner; none
    /// given removes them.
    SetRatelimits {
        owner: String,
        /// NAME:LIMIT:DURATION_MS; repeat for several.
        #[arg(long = "ratelimit", value_name = "NAME:LIMIT:MS")]
        ratelimits: Vec<String>,
    },
}

#[derive(Args)]
pub struct TokensArgs {
    #[command(flatten)]
    conn: Conn,
    #[command(subcommand)]
    command: TokensCommand,
}

#[derive(Subcommand)]
enum TokensCommand {
    /// Create an admin token with some of your token's scopes.
    Create {
        #[arg(long)]
        name: String,
        /// e.g. keys:verify; repeat for several.
        #[arg(long = "scope", required = true)]
        scopes: Vec<String>,
        /// Limit the token to these APIs.
        #[arg(long = "api-id")]
        api_ids: Option<Vec<String>>,
        /// Limit the token to these environments.
        #[arg(long = "env")]
        environments: Option<Vec<String>>,
        #[arg(long)]
        expires_at: Option<String>,
    },
    /// List admin tokens.
    List,
    /// Revoke an admin token.
    Revoke { id: String },
}

pub async fn apis(args: ApisArgs) -> anyhow::Result<ExitCode> {
    let c = &args.conn.connect()?;
    let (method, path, body) = match args.command {
        ApisCommand::Create {
            name,
            prefix,
            environments,
        } => {
            let mut body = json!({ "name": name, "prefix": prefix });
            if !environments.is_empty() {
                body["environments"] = json!(environments);
            }
            (Method::POST, "/v1/apis".to_owned(), Some(body))
        }
        ApisCommand::List => (Method::GET, "/v1/apis".to_owned(), None),
        ApisCommand::Get { id } => (Method::GET, format!("/v1/apis/{}", segment(&id)), None),
    };
    let value = call(c, method, &path, body).await?;
    if c.json {
        print_json(&value)?;
    } else if let Some(apis) = value["apis"].as_array() {
        for api in apis {
            print_api(api)?;
        }
    } else {
        print_api(&value)?;
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn keys(args: KeysArgs) -> anyhow::Result<ExitCode> {
    let c = &args.conn.connect()?;
    match args.command {
        KeysCommand::Create {
            api_id,
            environment,
            owner,
            name,
            scopes,
            metadata,
            expires_at,
            limits,
        } => {
            let mut body = json!({
                "api_id": api_id, "environment": environment, "owner": owner, "scopes": scopes,
            });
            limits.apply(&mut body)?;
            if let Some(name) = name {
                body["name"] = json!(name);
            }
            if let Some(metadata) = metadata {
                body["metadata"] = parse_json_arg("--metadata", &metadata)?;
            }
            if let Some(at) = expires_at {
                body["expires_at"] = json!(at);
            }
            let value = call(c, Method::POST, "/v1/keys", Some(body)).await?;
            print_issued(c, &value)?;
        }
        KeysCommand::List {
            api_id,
            owner,
            environment,
            state,
            cursor,
            limit,
        } => {
            let path = with_query(
                "/v1/keys",
                [
                    ("api_id", api_id),
                    ("owner", owner),
                    ("environment", environment),
                    ("state", state),
                    ("cursor", cursor),
                    ("limit", limit.map(|l| l.to_string())),
                ],
            );
            let value = call(c, Method::GET, &path, None).await?;
            if c.json {
                print_json(&value)?;
            } else {
                for key in value["keys"].as_array().into_iter().flatten() {
                    print_key_line(key)?;
                }
                if let Some(next) = value["next_cursor"].as_str() {
                    outln!("more: --cursor {next}");
                }
            }
        }
        KeysCommand::Get { id } => {
            let value = call(c, Method::GET, &format!("/v1/keys/{}", segment(&id)), None).await?;
            print_key(c, &value)?;
        }
        KeysCommand::Update {
            id,
            name,
            scopes,
            metadata,
            expires_at,
            no_expiry,
            enable,
            disable,
            limits,
            no_ratelimits,
            no_credits,
            any_ip,
        } => {
            let mut body = json!({});
            limits.apply(&mut body)?;
            if no_ratelimits {
                body["ratelimits"] = json!([]);
            }
            if no_credits {
                body["credits"] = Value::Null;
            }
            if any_ip {
                body["ip_allowlist"] = json!([]);
            }
            if let Some(name) = name {
                body["name"] = json!(name);
            }
            if let Some(scopes) = scopes {
                body["scopes"] = json!(scopes);
            }
            if let Some(metadata) = metadata {
                body["metadata"] = parse_json_arg("--metadata", &metadata)?;
            }
            if let Some(at) = expires_at {
                body["expires_at"] = json!(at);
            }
            if no_expiry {
                body["expires_at"] = Value::Null;
            }
            if enable || disable {
                body["enabled"] = json!(enable);
            }
            let value = call(
                c,
                Method::PATCH,
                &format!("/v1/keys/{}", segment(&id)),
                Some(body),
            )
            .await?;
            print_key(c, &value)?;
        }
        KeysCommand::Rotate { id, grace } => {
            let body = json!({ "grace_period_seconds": grace });
            let value = call(
                c,
                Method::POST,
                &format!("/v1/keys/{}/rotate", segment(&id)),
                Some(body),
            )
            .await?;
            print_issued(c, &value)?;
        }
        KeysCommand::Revoke { id, reason } => {
            let body = json!({ "reason": reason });
            let value = call(
                c,
                Method::POST,
                &format!("/v1/keys/{}/revoke", segment(&id)),
                Some(body),
            )
            .await?;
            print_key(c, &value)?;
        }
        KeysCommand::BulkRevoke {
            owner,
            api_id,
            environment,
            created_before,
            scope,
            reason,
        } => {
            let body = json!({
                "owner": owner, "api_id": api_id, "environment": environment,
                "created_before": created_before, "scope": scope, "reason": reason,
            });
            let value = call(c, Method::POST, "/v1/keys/bulk-revoke", Some(body)).await?;
            if c.json {
                print_json(&value)?;
            } else {
                outln!("revoked {} keys", value["revoked"]);
            }
        }
        KeysCommand::Verify {
            key,
            scopes,
            environment,
            ip,
            cost,
        } => {
            let key = match key.as_deref() {
                None | Some("-") => read_key_from_stdin()?,
                Some(key) => key.to_owned(),
            };
            let body = json!({
                "key": key, "scopes": scopes, "environment": environment, "ip": ip, "cost": cost,
            });
            let value = call(c, Method::POST, "/v1/keys/verify", Some(body)).await?;
            if c.json {
                print_json(&value)?;
            } else {
                let mut line = text(&value["code"]).to_owned();
                if let Some(id) = value["key_id"].as_str() {
                    line.push_str(&format!(
                        "  {id}  owner={}  env={}  scopes={}",
                        text(&value["owner"]),
                        text(&value["environment"]),
                        join(&value["scopes"])
                    ));
                }
                if let Some(limit) = value["ratelimit"].as_object() {
                    line.push_str(&format!(
                        "  ratelimit={}/{}",
                        limit["remaining"], limit["limit"]
                    ));
                }
                if let Some(credits) = value["credits_remaining"].as_u64() {
                    line.push_str(&format!("  credits={credits}"));
                }
                outln!("{line}");
            }
            return Ok(if value["valid"] == json!(true) {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            });
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn owners(args: OwnersArgs) -> anyhow::Result<ExitCode> {
    let c = &args.conn.connect()?;
    let value = match args.command {
        OwnersCommand::Ratelimits { owner } => {
            let path = format!("/v1/owners/{}/ratelimits", segment(&owner));
            call(c, Method::GET, &path, None).await?
        }
        OwnersCommand::SetRatelimits { owner, ratelimits } => {
            let path = format!("/v1/owners/{}/ratelimits", segment(&owner));
            let body = json!({ "ratelimits": parse_ratelimits(&ratelimits)? });
            call(c, Method::PUT, &path, Some(body)).await?
        }
    };
    if c.json {
        print_json(&value)?;
    } else {
        let limits = value["ratelimits"].as_array().cloned().unwrap_or_default();
        if limits.is_empty() {
            outln!("no owner rate limits");
        }
        for l in limits {
            outln!(
                "{}  {} per {} ms",
                text(&l["name"]),
                l["limit"],
                l["duration_ms"]
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn tokens(args: TokensArgs) -> anyhow::Result<ExitCode> {
    let c = &args.conn.connect()?;
    match args.command {
        TokensCommand::Create {
            name,
            scopes,
            api_ids,
            environments,
            expires_at,
        } => {
            let body = json!({
                "name": name, "scopes": scopes, "api_ids": api_ids,
                "environments": environments, "expires_at": expires_at,
            });
            let value = call(c, Method::POST, "/v1/tokens", Some(body)).await?;
            if c.json {
                print_json(&value)?;
            } else {
                outln!(
                    "{}  {}  scopes={}",
                    text(&value["id"]),
                    text(&value["name"]),
                    join(&value["scopes"])
                );
                outln!(
                    "token (shown once, store it now): {}",
                    text(&value["token"])
                );
            }
        }
        TokensCommand::List => {
            let value = call(c, Method::GET, "/v1/tokens", None).await?;
            if c.json {
                print_json(&value)?;
            } else {
                for t in value["tokens"].as_array().into_iter().flatten() {
                    let state = if t["revoked_at"].is_null() {
                        "active"
                    } else {
                        "revoked"
                    };
                    outln!(
                        "{}  {}  {}…  {state}  scopes={}",
                        text(&t["id"]),
                        text(&t["name"]),
                        text(&t["start"]),
                        join(&t["scopes"])
                    );
                }
            }
        }
        TokensCommand::Revoke { id } => {
            let value = call(
                c,
                Method::POST,
                &format!("/v1/tokens/{}/revoke", segment(&id)),
                None,
            )
            .await?;
            if c.json {
                print_json(&value)?;
            } else {
                outln!("{}  revoked", text(&value["id"]));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Args)]
pub struct SecretsArgs {
    #[command(flatten)]
    conn: Conn,
    /// The KV v2 mount.
    #[arg(long, default_value = "secret", global = true)]
    mount: String,
    #[command(subcommand)]
    command: SecretsCommand,
}

#[derive(Subcommand)]
enum SecretsCommand {
    /// Write a new version: `keyward secrets put db/main user=app password=-`
    /// (`-` reads that value from standard input, keeping it out of the
    /// process list).
    Put {
        path: String,
        #[arg(required = true)]
        pairs: Vec<String>,
        /// Write only if the current version is this one (0: only if new).
        #[arg(long)]
        cas: Option<u64>,
    },
    /// Read the latest version, or `--version N`.
    Get {
        path: String,
        #[arg(long)]
        version: Option<u64>,
    },
    /// List the names under a prefix.
    List {
        #[arg(default_value = "")]
        prefix: String,
    },
    /// Soft-delete the latest version.
    Delete { path: String },
    /// Restore soft-deleted versions.
    Undelete {
        path: String,
        /// The versions to restore, e.g. `--versions 2,3`.
        #[arg(long, value_delimiter = ',', required = true)]
        versions: Vec<u64>,
    },
}

pub async fn secrets(args: SecretsArgs) -> anyhow::Result<ExitCode> {
    let c = &args.conn.connect()?;
    let mount = &args.mount;
    match args.command {
        SecretsCommand::Put { path, pairs, cas } => {
            let mut data = serde_json::Map::new();
            for pair in pairs {
                let Some((key, value)) = pair.split_once('=') else {
                    bail!("expected KEY=VALUE, got a pair without =");
                };
                let value = if value == "-" {
                    read_secret_line(key)?
                } else {
                    value.to_owned()
                };
                data.insert(key.to_owned(), Value::String(value));
            }
            let mut body = json!({ "data": data });
            if let Some(cas) = cas {
                body["options"] = json!({ "cas": cas });
            }
            let value = call(
                c,
                Method::POST,
                &format!("/v1/{mount}/data/{path}"),
                Some(body),
            )
            .await?;
            if c.json {
                print_json(&value)?;
            } else {
                outln!("{mount}/{path}  version {}", value["data"]["version"]);
            }
        }
        SecretsCommand::Get { path, version } => {
            let query = version.map(|v| format!("?version={v}")).unwrap_or_default();
            let value = match call(
                c,
                Method::GET,
                &format!("/v1/{mount}/data/{path}{query}"),
                None,
            )
            .await
            {
                Ok(value) => value,
                Err(e) => match deleted_version(&e, mount, &path) {
                    Some(why) => bail!(why),
                    None => return Err(e),
                },
            };
            if c.json {
                print_json(&value)?;
            } else {
                let meta = &value["data"]["metadata"];
                outln!(
                    "{mount}/{path}  version {}  created {}",
                    meta["version"],
                    text(&meta["created_time"])
                );
                for (key, v) in value["data"]["data"].as_object().into_iter().flatten() {
                    match v.as_str() {
                        Some(s) => outln!("{key}={s}"),
                        None => outln!("{key}={v}"),
                    }
                }
            }
        }
        SecretsCommand::List { prefix } => {
            let value = call(
                c,
                Method::GET,
                &format!("/v1/{mount}/metadata/{prefix}?list=true"),
                None,
            )
            .await?;
            if c.json {
                print_json(&value)?;
            } else {
                for key in value["data"]["keys"].as_array().into_iter().flatten() {
                    outln!("{}", text(key));
                }
            }
        }
        SecretsCommand::Delete { path } => {
            send(
                c,
                Method::DELETE,
                &format!("/v1/{mount}/data/{path}"),
                None,
                c.token,
            )
            .await?;
            if !c.json {
                outln!("{mount}/{path}  latest version deleted");
            }
        }
        SecretsCommand::Undelete { path, versions } => {
            call(
                c,
                Method::POST,
                &format!("/v1/{mount}/undelete/{path}"),
                Some(json!({ "versions": versions })),
            )
            .await?;
            if !c.json {
                let list: Vec<String> = versions.iter().map(u64::to_string).collect();
                outln!("{mount}/{path}  restored version {}", list.join(","));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Args)]
pub struct OperatorArgs {
    #[command(flatten)]
    conn: Conn,
    #[command(subcommand)]
    command: OperatorCommand,
}

#[derive(Subcommand)]
enum OperatorCommand {
    /// Show whether the server is sealed, and the unseal progress.
    Status,
    /// Initialise a shamir seal: prints the unseal shares, once.
    Init {
        /// Shares to issue (2–255), one for each operator.
        #[arg(long, default_value_t = 5)]
        shares: u8,
        /// Shares needed to unseal.
        #[arg(long, default_value_t = 3)]
        threshold: u8,
    },
    /// Give one unseal share, read from standard input (never an argument,
    /// which other users could see in the process list).
    Unseal {
        /// Forget the shares given so far instead.
        #[arg(long)]
        reset: bool,
    },
    /// Seal the server: the master key leaves its memory.
    Seal,
    /// Add a keyring version; new data is encrypted under it, and stored
    /// data keys move to it in the background.
    Rotate,
    /// Move every stored data key to the newest keyring version now.
    Rewrap,
    /// Replace the master key and issue new shares. Reads the threshold of
    /// current shares from standard input, one a line.
    Rekey {
        #[arg(long, default_value_t = 5)]
        shares: u8,
        #[arg(long, default_value_t = 3)]
        threshold: u8,
    },
    /// Recovery when no one holds a root token: on the store directly (as
    /// `serve` finds it), revoke every full-access token and print a new root
    /// token once. Needs what unseals the store: master.key in the data
    /// directory (`file`), the HSM (`pkcs11`), or the threshold of unseal
    /// shares on standard input, one a line (`shamir`).
    RootToken(crate::recover::RootTokenArgs),
}

pub async fn operator(args: OperatorArgs) -> anyhow::Result<ExitCode> {
    let c = &args.conn.connect()?;
    let status = match args.command {
        OperatorCommand::RootToken(recovery) => return crate::recover::run(recovery, c.json).await,
        OperatorCommand::Status => {
            send(c, Method::GET, "/v1/sys/seal-status", None, c.token).await?
        }
        OperatorCommand::Init { shares, threshold } => {
            if let Some(why) = seal_type(c)
                .await
                .and_then(|kind| self_unsealing(&kind, "initialise"))
            {
                bail!(why);
            }
            let body = json!({ "secret_shares": shares, "secret_threshold": threshold });
            let value = call(c, Method::POST, "/v1/sys/init", Some(body)).await?;
            if c.json {
                print_json(&value)?;
            } else {
                for (i, key) in value["keys"].as_array().into_iter().flatten().enumerate() {
                    outln!("Unseal share {}: {}", i + 1, text(key));
                }
                outln!();
                outln!(
                    "The server is initialised and sealed. These {shares} shares are shown \
                     once and kept nowhere: give each to a different operator. Any \
                     {threshold} of them unseal the server (`keyward operator unseal`) \
                     after every start."
                );
            }
            return Ok(ExitCode::SUCCESS);
        }
        OperatorCommand::Unseal { reset } => {
            if let Some(why) = seal_type(c)
                .await
                .and_then(|kind| self_unsealing(&kind, "unseal"))
            {
                bail!(why);
            }
            let body = if reset {
                json!({ "reset": true })
            } else {
                let share = read_secret_line("unseal share")?;
                json!({ "key": share })
            };
            send(c, Method::POST, "/v1/sys/unseal", Some(body), c.token).await?
        }
        OperatorCommand::Seal => call(c, Method::POST, "/v1/sys/seal", None).await?,
        OperatorCommand::Rewrap => {
            let value = call(c, Method::POST, "/v1/sys/rewrap", None).await?;
            if c.json {
                print_json(&value)?;
            } else {
                outln!(
                    "rewrapped {} data keys ({} already current, {} failed)",
                    value["data"]["moved"],
                    value["data"]["current"],
                    value["data"]["failed"]
                );
            }
            return Ok(ExitCode::SUCCESS);
        }
        OperatorCommand::Rekey { shares, threshold } => {
            if std::io::stdin().is_terminal() {
                eprintln!("current unseal shares, one a line, then end of input:");
            }
            let current: Vec<String> = std::io::stdin()
                .lock()
                .lines()
                .map_while(Result::ok)
                .map(|l| l.trim().to_owned())
                .filter(|l| !l.is_empty())
                .collect();
            let body = json!({
                "keys": current, "secret_shares": shares, "secret_threshold": threshold,
            });
            let value = call(c, Method::POST, "/v1/sys/rekey", Some(body)).await?;
            if c.json {
                print_json(&value)?;
            } else {
                for (i, key) in value["keys"].as_array().into_iter().flatten().enumerate() {
                    outln!("Unseal share {}: {}", i + 1, text(key));
                }
                outln!();
                outln!(
                    "The master key was replaced; the old shares no longer unseal. These \
                     {shares} shares are shown once: any {threshold} of them unseal."
                );
            }
            return Ok(ExitCode::SUCCESS);
        }
        OperatorCommand::Rotate => {
            let value = call(c, Method::POST, "/v1/sys/rotate", None).await?;
            if c.json {
                print_json(&value)?;
            } else {
                outln!("keyring version {}", value["keyring_version"]);
            }
            return Ok(ExitCode::SUCCESS);
        }
    };
    if c.json {
        print_json(&status)?;
    } else {
        let state = if status["initialized"] == json!(false) {
            "not initialised".to_owned()
        } else if status["sealed"] == json!(true) {
            format!(
                "sealed (unseal progress {}/{})",
                status["progress"], status["t"]
            )
        } else {
            format!("unsealed (keyring version {})", status["keyring_version"])
        };
        outln!("seal: {}  {state}", text(&status["type"]));
    }
    Ok(ExitCode::SUCCESS)
}

/// Sends one request and returns the JSON body, or the server's error as
/// `CODE: message`.
async fn call(
    c: &Server<'_>,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> anyhow::Result<Value> {
    let Some(token) = c.token else {
        bail!("no admin token: set KEYWARD_TOKEN or pass --token");
    };
    send(c, method, path, body, Some(token)).await
}

/// Like [`call`], for the few endpoints that need no token (seal status and
/// unseal); sends the token when there is one.
async fn send(
    c: &Server<'_>,
    method: Method,
    path: &str,
    body: Option<Value>,
    token: Option<&str>,
) -> anyhow::Result<Value> {
    let url = format!("{}{}", c.addr.trim_end_matches('/'), path);
    let mut request = c.http.request(method, &url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request
        .send()
        .await
        .with_context(|| format!("cannot reach the server at {}", c.addr))?;
    let status = response.status();
    if status == reqwest::StatusCode::NO_CONTENT {
        return Ok(Value::Null);
    }
    let value: Value = response
        .json()
        .await
        .with_context(|| format!("the server answered {status} without JSON"))?;
    if !status.is_success() {
        return Err(ServerError::new(status, value).into());
    }
    Ok(value)
}

/// A refusal from the server, kept whole so a command can say more about
/// the answers it knows (a deleted secret version, a seal that does not
/// take shares).
#[derive(Debug)]
struct ServerError {
    status: reqwest::StatusCode,
    /// Keyward's stable `code`, when the answer has one.
    code: Option<String>,
    /// What the server said: Keyward's `error.message`, else Vault's
    /// `errors` array, else the status's reason.
    message: String,
    body: Value,
}

impl ServerError {
    fn new(status: reqwest::StatusCode, body: Value) -> Self {
        let code = body["error"]["code"].as_str().map(str::to_owned);
        let vault: Vec<&str> = body["errors"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .filter(|m| !m.is_empty())
            .collect();
        let message = match body["error"]["message"].as_str() {
            Some(message) if !message.is_empty() => message.to_owned(),
            _ if !vault.is_empty() => vault.join("; "),
            _ => status
                .canonical_reason()
                .unwrap_or("the server refused the request")
                .to_lowercase(),
        };
        ServerError {
            status,
            code,
            message,
            body,
        }
    }
}

impl std::fmt::Display for ServerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.code {
            Some(code) => write!(f, "{code}: {}", self.message)?,
            None => f.write_str(&self.message)?,
        }
        write!(f, " (HTTP {})", self.status.as_u16())
    }
}

impl std::error::Error for ServerError {}

/// What to tell the operator when a KV read answered 404 with the version's
/// metadata: Vault's answer for a deleted or destroyed version.
fn deleted_version(e: &anyhow::Error, mount: &str, path: &str) -> Option<String> {
    let e = e.downcast_ref::<ServerError>()?;
    let meta = &e.body["data"]["metadata"];
    if e.status != reqwest::StatusCode::NOT_FOUND || !meta.is_object() {
        return None;
    }
    let version = meta["version"].as_u64()?;
    let mount_flag = if mount == "secret" {
        String::new()
    } else {
        format!(" --mount {mount}")
    };
    if meta["destroyed"] == json!(true) {
        return Some(format!(
            "version {version} of {mount}/{path} was destroyed: its data is gone and cannot be \
             restored. `keyward secrets get{mount_flag} {path} --version N` reads another \
             version; `keyward secrets put` writes a new one"
        ));
    }
    let when = meta["deletion_time"]
        .as_str()
        .filter(|t| !t.is_empty())
        .map(|t| format!(" at {t}"))
        .unwrap_or_default();
    Some(format!(
        "version {version} of {mount}/{path} was deleted{when}; \
         `keyward secrets undelete{mount_flag} {path} --versions {version}` restores it"
    ))
}

/// The type of this server's seal, asked without a token; `None` when the
/// server does not say.
async fn seal_type(c: &Server<'_>) -> Option<String> {
    let status = send(c, Method::GET, "/v1/sys/seal-status", None, None)
        .await
        .ok()?;
    status["type"].as_str().map(str::to_owned)
}

/// Why an operation on shares means nothing to a seal that unseals itself.
fn self_unsealing(kind: &str, what: &str) -> Option<String> {
    let how = match kind {
        "file" => {
            "it unseals itself at every start with master.key from its data directory. \
             If it was sealed by hand (`keyward operator seal`), restart it; if it starts \
             sealed, its master.key is not the key that sealed this store: copy the key of \
             the node that initialised it"
        }
        "pkcs11" => {
            "its HSM unwraps the master key at every start. If it was sealed by hand \
             (`keyward operator seal`), restart it; if it starts sealed, check the HSM, \
             KEYWARD_HSM_PIN and the pkcs11 settings"
        }
        _ => return None,
    };
    Some(format!(
        "this server's seal is `{kind}`, which has no unseal shares, so there is nothing to \
         {what}: {how}. Shares exist only with the `shamir` seal"
    ))
}

fn read_secret_line(what: &str) -> anyhow::Result<String> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprintln!("{what}: ");
    }
    let mut line = String::new();
    stdin
        .lock()
        .read_line(&mut line)
        .with_context(|| format!("cannot read the {what}"))?;
    Ok(line.trim().to_owned())
}

fn read_key_from_stdin() -> anyhow::Result<String> {
    read_secret_line("key")
}

fn parse_json_arg(flag: &str, text: &str) -> anyhow::Result<Value> {
    serde_json::from_str(text).with_context(|| format!("{flag} must be JSON"))
}

/// What a path segment keeps as it is: RFC 3986's unreserved characters.
/// Every other byte is percent-encoded, `/` included.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// `s` as one segment of a URL path.
fn segment(s: &str) -> PercentEncode<'_> {
    utf8_percent_encode(s, SEGMENT)
}

/// `path` with a query of the parameters that have a value, encoded as the
/// server's query parser reads them (`application/x-www-form-urlencoded`).
fn with_query<'a>(
    path: &str,
    parameters: impl IntoIterator<Item = (&'a str, Option<String>)>,
) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (name, value) in parameters {
        if let Some(value) = value {
            query.append_pair(name, &value);
        }
    }
    let query = query.finish();
    if query.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{query}")
    }
}

fn text(v: &Value) -> &str {
    v.as_str().unwrap_or("-")
}

fn join(v: &Value) -> String {
    let items: Vec<&str> = v
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    if items.is_empty() {
        "-".to_owned()
    } else {
        items.join(",")
    }
}

fn print_json(v: &Value) -> std::io::Result<()> {
    outln!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
    Ok(())
}

fn print_api(api: &Value) -> std::io::Result<()> {
    outln!(
        "{}  {}  prefix={}  environments={}",
        text(&api["id"]),
        text(&api["name"]),
        text(&api["prefix"]),
        join(&api["environments"])
    );
    Ok(())
}

fn print_key_line(k: &Value) -> std::io::Result<()> {
    outln!(
        "{}  {}…  {}  {}  owner={}  scopes={}",
        text(&k["id"]),
        text(&k["start"]),
        text(&k["environment"]),
        text(&k["state"]),
        text(&k["owner"]),
        join(&k["scopes"])
    );
    Ok(())
}

fn print_key(c: &Server<'_>, k: &Value) -> std::io::Result<()> {
    if c.json {
        return print_json(k);
    }
    print_key_line(k)?;
    for field in [
        "name",
        "expires_at",
        "revoked_at",
        "revoke_reason",
        "rotated_from",
        "rotated_to",
    ] {
        if let Some(v) = k[field].as_str() {
            outln!("  {field}: {v}");
        }
    }
    Ok(())
}

fn print_issued(c: &Server<'_>, v: &Value) -> std::io::Result<()> {
    if c.json {
        return print_json(v);
    }
    print_key_line(v)?;
    outln!("key (shown once, store it now): {}", text(&v["key"]));
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_path_segment_keeps_only_unreserved_characters() {
        let cases = [
            ("acme", "acme"),
            ("key_0aZ-9.~", "key_0aZ-9.~"),
            ("a b/c?d#e%f+g&h=i", "a%20b%2Fc%3Fd%23e%25f%2Bg%26h%3Di"),
            ("é", "%C3%A9"),
            ("", ""),
        ];
        for (raw, encoded) in cases {
            assert_eq!(super::segment(raw).to_string(), encoded, "{raw}");
        }
    }

    #[test]
    fn a_query_holds_the_values_given_as_the_server_reads_them() {
        let none = super::with_query("/v1/keys", [("owner", None), ("state", None)]);
        assert_eq!(none, "/v1/keys");
        let path = super::with_query(
            "/v1/keys",
            [
                ("owner", Some("a b+c&d=e%f/é#g".to_owned())),
                ("state", None),
                ("limit", Some("10".to_owned())),
            ],
        );
        let (route, query) = path.split_once('?').unwrap();
        assert_eq!(route, "/v1/keys");
        assert!(!query.contains(['#', ' ', '/']), "{query}");
        let read: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
        let expected = [("owner", "a b+c&d=e%f/é#g"), ("limit", "10")]
            .map(|(n, v)| (n.to_owned(), v.to_owned()));
        assert_eq!(read, expected);
    }
}
