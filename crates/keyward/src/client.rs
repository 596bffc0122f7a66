//! The client commands: each is one admin API call, printed for people or,
//! with `--json`, as the server's JSON.
//!
//! Bodies are built from `keyward-proto`'s request types, the ones the
//! server's handlers read, and answers are read into its response types for
//! the summaries; `--json` prints the answer as the server sent it. Only the
//! KV v2 bodies of `secrets` are written by hand: they are Vault's wire
//! format, which the server reads in the KV engine, not a Keyward type.

use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal};
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use keyward_core::limits::{RateLimit, Refill, RefillInterval};
use keyward_core::Environment;
use keyward_proto::{
    ApiCreate, ApiList, ApiUpdate, ApiView, BulkRevokeRequest, BulkRevokeResult, CreditsInput,
    ErrorResponse, IssuedKey, IssuedToken, KeyCreate, KeyList, KeyUpdate, KeyView, KeyringRotated,
    OwnerRateLimits, RekeyRequest, RevokeRequest, RewrapResult, RotateRequest, SealInit,
    SealInitResult, SealStatusView, TokenCreate, TokenList, TokenView, UnsealRequest, VerifyAnswer,
    VerifyRequest,
};
use percent_encoding::{utf8_percent_encode, AsciiSet, PercentEncode, NON_ALPHANUMERIC};
use reqwest::Method;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

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
    /// The server as one command talks to it. Without `--token` or
    /// `KEYWARD_TOKEN`, the session `keyward login` stored for this server
    /// is used.
    pub(crate) fn connect(&self) -> anyhow::Result<Server<'_>> {
        let token = match &self.token {
            Some(token) => Some(token.clone()),
            None => crate::people::stored_session(&self.addr),
        };
        Ok(Server {
            http: http_client()?,
            addr: &self.addr,
            token,
            json: self.json,
        })
    }
}

/// The server a client command talks to. All of the command's requests go
/// through its one HTTP client, so they share its connection pool instead
/// of each setting up a client and a connection of its own.
pub(crate) struct Server<'a> {
    http: reqwest::Client,
    /// Where the server listens, as given (`--addr`).
    pub(crate) addr: &'a str,
    /// The admin token or session, sent with every request that needs one.
    pub(crate) token: Option<String>,
    /// Print the server's JSON instead of a summary.
    pub(crate) json: bool,
}

/// The HTTP client of one CLI run.
///
/// - `KEYWARD_CA_CERT` names a PEM file of CA certificates trusted besides
///   the usual roots, for a server whose certificate a private CA issued.
/// - `KEYWARD_CLIENT_CERT` and `KEYWARD_CLIENT_KEY` name the PEM files of
///   the certificate and key presented to a server that asks for one
///   (mutual TLS).
pub(crate) fn http_client() -> anyhow::Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder();
    if let Some(path) = std::env::var_os("KEYWARD_CA_CERT") {
        let path = std::path::PathBuf::from(path);
        let pem = std::fs::read(&path)
            .with_context(|| format!("cannot read KEYWARD_CA_CERT {}", path.display()))?;
        let cas = reqwest::Certificate::from_pem_bundle(&pem)
            .ok()
            .filter(|cas| !cas.is_empty())
            .with_context(|| {
                format!(
                    "KEYWARD_CA_CERT {}: no PEM certificate could be read from it",
                    path.display()
                )
            })?;
        for ca in cas {
            builder = builder.add_root_certificate(ca);
        }
    }
    let cert = std::env::var_os("KEYWARD_CLIENT_CERT");
    let key = std::env::var_os("KEYWARD_CLIENT_KEY");
    match (cert, key) {
        (None, None) => {}
        (Some(cert), Some(key)) => builder = builder.identity(client_identity(cert, key)?),
        _ => anyhow::bail!("KEYWARD_CLIENT_CERT and KEYWARD_CLIENT_KEY go together"),
    }
    builder.build().context("cannot set up the HTTP client")
}

/// The client certificate and key of mutual TLS, from their PEM files. The
/// key's bytes are wiped once read, and no error quotes them.
fn client_identity(
    cert: std::ffi::OsString,
    key: std::ffi::OsString,
) -> anyhow::Result<reqwest::Identity> {
    let read = |path: &std::ffi::OsString, name: &str| {
        std::fs::read(path)
            .map(zeroize::Zeroizing::new)
            .with_context(|| {
                format!(
                    "cannot read {name} {}",
                    std::path::Path::new(path).display()
                )
            })
    };
    let (cert_pem, key_pem) = (
        read(&cert, "KEYWARD_CLIENT_CERT")?,
        read(&key, "KEYWARD_CLIENT_KEY")?,
    );
    // Made large enough at once, so no copy of the key is left behind by a
    // reallocation.
    let mut pem = zeroize::Zeroizing::new(Vec::with_capacity(cert_pem.len() + key_pem.len() + 1));
    pem.extend_from_slice(&cert_pem);
    pem.push(b'\n');
    pem.extend_from_slice(&key_pem);
    reqwest::Identity::from_pem(&pem).map_err(|_| {
        anyhow::anyhow!(
            "KEYWARD_CLIENT_CERT {} and KEYWARD_CLIENT_KEY {}: no PEM certificate and private \
             key could be read from them",
            std::path::Path::new(&cert).display(),
            std::path::Path::new(&key).display()
        )
    })
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
        #[arg(long, value_delimiter = ',', value_parser = parse_environment)]
        environments: Vec<Environment>,
        /// The workspace the API belongs to [default: default].
        #[arg(long)]
        workspace: Option<String>,
        /// A key role and the scopes it stands for, as
        /// NAME=SCOPE,SCOPE…; repeat for several.
        #[arg(long = "role", value_name = "NAME=SCOPES", value_parser = parse_role)]
        roles: Vec<(String, Vec<String>)>,
        /// A scope to mark critical; repeat for several.
        #[arg(long = "critical-scope")]
        critical_scopes: Vec<String>,
        #[command(flatten)]
        signing: ApiSigningArgs,
    },
    /// List APIs.
    List,
    /// Show one API.
    Get { id: String },
    /// Change an API's name, key roles or critical scopes.
    Update {
        id: String,
        #[arg(long)]
        name: Option<String>,
        /// Replaces every role, as NAME=SCOPE,SCOPE…; repeat for several.
        /// Keys holding a role carry its new scopes at their next verify.
        #[arg(long = "role", value_name = "NAME=SCOPES", value_parser = parse_role)]
        roles: Option<Vec<(String, Vec<String>)>>,
        /// Remove every role (refused while keys hold one).
        #[arg(long, conflicts_with = "roles")]
        no_roles: bool,
        /// Replaces the critical scopes; repeat for several.
        #[arg(long = "critical-scope")]
        critical_scopes: Option<Vec<String>>,
        /// Mark no scope critical.
        #[arg(long, conflicts_with = "critical_scopes")]
        no_critical_scopes: bool,
        #[command(flatten)]
        signing: ApiSigningArgs,
    },
}

/// Which requests to an API's keys must be signed, as flags.
#[derive(Args)]
struct ApiSigningArgs {
    /// Every request with every key must be signed.
    #[arg(long)]
    sign_all: bool,
    /// Requests needing this scope must be signed; repeat for several.
    #[arg(long = "sign-scope")]
    sign_scopes: Vec<String>,
    /// A valid Ed25519 signature stands in for the owner's one-time code.
    #[arg(long)]
    ed25519_replaces_otp: bool,
}

impl ApiSigningArgs {
    fn body(&self) -> Option<keyward_proto::ApiSigningBody> {
        (self.sign_all || !self.sign_scopes.is_empty() || self.ed25519_replaces_otp).then(|| {
            keyward_proto::ApiSigningBody {
                all: self.sign_all,
                scopes: self.sign_scopes.clone(),
                ed25519_replaces_otp: self.ed25519_replaces_otp,
            }
        })
    }
}

/// A key's signing key, as flags of `keys create` and `keys update`.
#[derive(Args)]
struct SigningArgs {
    /// Every request with the key must be signed: hmac-sha256 (the server
    /// makes a secret, shown once) or ed25519 (give --public-key).
    #[arg(long, value_parser = parse_signing_algorithm)]
    signing: Option<keyward_core::SigningAlgorithm>,
    /// How far a request's signing time may lie from the server's clock.
    #[arg(long, requires = "signing")]
    signing_window_ms: Option<u64>,
    /// The customer's Ed25519 public key: base64, or a PEM file's path.
    #[arg(long, requires = "signing")]
    public_key: Option<String>,
}

impl SigningArgs {
    fn body(&self) -> anyhow::Result<Option<keyward_proto::SigningBody>> {
        let Some(algorithm) = self.signing else {
            return Ok(None);
        };
        let public_key = match &self.public_key {
            Some(key) if std::path::Path::new(key).is_file() => {
                Some(std::fs::read_to_string(key).with_context(|| format!("--public-key {key}"))?)
            }
            other => other.clone(),
        };
        Ok(Some(keyward_proto::SigningBody {
            algorithm,
            window_ms: self.signing_window_ms,
            public_key,
        }))
    }
}

fn parse_signing_algorithm(s: &str) -> Result<keyward_core::SigningAlgorithm, String> {
    match s {
        "hmac-sha256" => Ok(keyward_core::SigningAlgorithm::HmacSha256),
        "ed25519" => Ok(keyward_core::SigningAlgorithm::Ed25519),
        _ => Err("expected hmac-sha256 or ed25519".to_owned()),
    }
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
        #[arg(long = "env", value_parser = parse_environment)]
        environment: Environment,
        /// The identity the key belongs to (your customer).
        #[arg(long)]
        owner: String,
        #[arg(long)]
        name: Option<String>,
        /// A scope the key carries; repeat for several.
        #[arg(long = "scope")]
        scopes: Vec<String>,
        /// A role of the key's API; the key carries its scopes. Repeat for
        /// several.
        #[arg(long = "role")]
        roles: Vec<String>,
        /// A JSON object returned by every verify.
        #[arg(long)]
        metadata: Option<String>,
        /// RFC 3339 time after which the key stops working.
        #[arg(long, value_parser = parse_time)]
        expires_at: Option<OffsetDateTime>,
        #[command(flatten)]
        limits: LimitArgs,
        #[command(flatten)]
        signing: SigningArgs,
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
    /// Change a key's name, scopes, roles, metadata, expiry or enabled flag.
    Update {
        id: String,
        #[arg(long)]
        name: Option<String>,
        /// Replaces all scopes; repeat for several.
        #[arg(long = "scope")]
        scopes: Option<Vec<String>>,
        /// Replaces all roles; repeat for several.
        #[arg(long = "role")]
        roles: Option<Vec<String>>,
        /// Remove every role from the key.
        #[arg(long, conflicts_with = "roles")]
        no_roles: bool,
        #[arg(long)]
        metadata: Option<String>,
        #[arg(long, conflicts_with = "no_expiry", value_parser = parse_time)]
        expires_at: Option<OffsetDateTime>,
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
        #[command(flatten)]
        signing: SigningArgs,
        /// Let the key verify unsigned again.
        #[arg(long, conflicts_with = "signing")]
        no_signing: bool,
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
        #[arg(long = "env", value_parser = parse_environment)]
        environment: Option<Environment>,
        /// RFC 3339 time: keys created before it.
        #[arg(long, value_parser = parse_time)]
        created_before: Option<OffsetDateTime>,
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
        #[arg(long = "env", value_parser = parse_environment)]
        environment: Option<Environment>,
        /// The client's IP address, for keys with an allowlist.
        #[arg(long)]
        ip: Option<String>,
        /// Units this request counts against limits and credits.
        #[arg(long)]
        cost: Option<u64>,
        /// The key owner's one-time code, for a critical scope.
        #[arg(long)]
        otp: Option<String>,
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
    /// The rate limits given, or `None` when no `--ratelimit` was.
    fn ratelimits(&self) -> anyhow::Result<Option<Vec<RateLimit>>> {
        if self.ratelimits.is_empty() {
            return Ok(None);
        }
        parse_ratelimits(&self.ratelimits).map(Some)
    }

    /// The credits given, or `None` when `--credits` was not.
    fn credits(&self) -> anyhow::Result<Option<CreditsInput>> {
        let Some(remaining) = self.credits else {
            return Ok(None);
        };
        let refill = self.refill.as_deref().map(parse_refill).transpose()?;
        Ok(Some(CreditsInput { remaining, refill }))
    }

    /// The allowlist given, or `None` when no `--ip` was.
    fn ip_allowlist(&self) -> Option<Vec<String>> {
        (!self.ips.is_empty()).then(|| self.ips.clone())
    }
}

fn parse_ratelimits(specs: &[String]) -> anyhow::Result<Vec<RateLimit>> {
    let mut limits = Vec::new();
    for spec in specs {
        let parts: Vec<&str> = spec.split(':').collect();
        let [name, limit, duration] = parts.as_slice() else {
            bail!("--ratelimit {spec}: expected NAME:LIMIT:DURATION_MS");
        };
        let limit: u64 = limit
            .parse()
            .with_context(|| format!("--ratelimit {spec}: LIMIT"))?;
        let duration_ms: u64 = duration
            .parse()
            .with_context(|| format!("--ratelimit {spec}: DURATION_MS"))?;
        limits.push(RateLimit {
            name: (*name).to_owned(),
            limit,
            duration_ms,
        });
    }
    Ok(limits)
}

fn parse_refill(spec: &str) -> anyhow::Result<Refill> {
    let parts: Vec<&str> = spec.split(':').collect();
    let (interval, amount, day) = match parts.as_slice() {
        [interval, amount] => (*interval, *amount, None),
        [interval, amount, day] => (*interval, *amount, Some(*day)),
        _ => bail!("--refill {spec}: expected daily:AMOUNT or monthly:AMOUNT[:DAY]"),
    };
    let interval = match interval {
        "daily" => RefillInterval::Daily,
        "monthly" => RefillInterval::Monthly,
        _ => bail!("--refill {spec}: expected daily:AMOUNT or monthly:AMOUNT[:DAY]"),
    };
    let amount: u64 = amount
        .parse()
        .with_context(|| format!("--refill {spec}: AMOUNT"))?;
    let day = day
        .map(|day| {
            day.parse::<u8>()
                .with_context(|| format!("--refill {spec}: DAY"))
        })
        .transpose()?;
    Ok(Refill {
        interval,
        amount,
        day,
    })
}

/// `--env`: the environments the server knows, checked here so that the
/// body holds an `Environment` as the server reads it.
pub(crate) fn parse_environment(s: &str) -> Result<Environment, String> {
    s.parse()
        .map_err(|_| "expected live, test or dev".to_owned())
}

/// A time flag, read as the server reads times: RFC 3339.
fn parse_time(s: &str) -> Result<OffsetDateTime, String> {
    OffsetDateTime::parse(s, &Rfc3339)
        .map_err(|_| "expected an RFC 3339 time such as 2100-01-01T00:00:00Z".to_owned())
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
    /// Enrol a TOTP secret for an owner (your customer), for critical
    /// scopes; shown once, for the customer's authenticator app.
    Totp { owner: String },
    /// Confirm an owner's TOTP secret with a first code from it.
    TotpConfirm { owner: String, otp: String },
    /// Remove an owner's TOTP secret (critical scopes are refused until a
    /// new one is confirmed).
    TotpRemove { owner: String },
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
        #[arg(long = "env", value_parser = parse_environment)]
        environments: Option<Vec<Environment>>,
        /// Limit the token to the APIs of these workspaces.
        #[arg(long = "workspace")]
        workspaces: Option<Vec<String>>,
        /// Bind the token to a client certificate of mutual TLS: its
        /// SHA-256 fingerprint (`openssl x509 -noout -fingerprint -sha256`).
        #[arg(long = "client-cert-sha256")]
        client_cert: Option<String>,
        #[arg(long, value_parser = parse_time)]
        expires_at: Option<OffsetDateTime>,
    },
    /// List admin tokens.
    List,
    /// Revoke an admin token.
    Revoke { id: String },
}

pub async fn apis(args: ApisArgs) -> anyhow::Result<ExitCode> {
    let c = &args.conn.connect()?;
    match args.command {
        ApisCommand::Create {
            name,
            prefix,
            environments,
            workspace,
            roles,
            critical_scopes,
            signing,
        } => {
            let body = ApiCreate {
                name,
                prefix,
                environments: (!environments.is_empty()).then_some(environments),
                workspace,
                roles: roles.into_iter().collect(),
                critical_scopes,
                signing: signing.body(),
            };
            let value = call(c, Method::POST, "/v1/apis", Some(Body::of(&body)?)).await?;
            show(c, &value, |api: ApiView| print_api(&api))?;
        }
        ApisCommand::List => {
            let value = call(c, Method::GET, "/v1/apis", None).await?;
            show(c, &value, |list: ApiList| {
                list.apis.iter().try_for_each(print_api)
            })?;
        }
        ApisCommand::Get { id } => {
            let value = call(c, Method::GET, &format!("/v1/apis/{}", segment(&id)), None).await?;
            show(c, &value, |api: ApiView| print_api(&api))?;
        }
        ApisCommand::Update {
            id,
            name,
            roles,
            no_roles,
            critical_scopes,
            no_critical_scopes,
            signing,
        } => {
            let body = ApiUpdate {
                signing: signing.body(),
                name,
                roles: if no_roles {
                    Some(BTreeMap::new())
                } else {
                    roles.map(|r| r.into_iter().collect())
                },
                critical_scopes: if no_critical_scopes {
                    Some(Vec::new())
                } else {
                    critical_scopes
                },
            };
            let value = call(
                c,
                Method::PATCH,
                &format!("/v1/apis/{}", segment(&id)),
                Some(Body::of(&body)?),
            )
            .await?;
            show(c, &value, |api: ApiView| print_api(&api))?;
        }
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
            roles,
            metadata,
            expires_at,
            limits,
            signing,
        } => {
            let body = KeyCreate {
                signing: signing.body()?,
                api_id,
                environment,
                name,
                owner,
                scopes,
                roles,
                metadata: metadata
                    .map(|m| parse_json_arg("--metadata", &m))
                    .transpose()?,
                expires_at,
                enabled: None,
                ratelimits: limits.ratelimits()?.unwrap_or_default(),
                credits: limits.credits()?,
                ip_allowlist: limits.ip_allowlist().unwrap_or_default(),
            };
            let value = call(c, Method::POST, "/v1/keys", Some(Body::of(&body)?)).await?;
            show(c, &value, |k: IssuedKey| print_issued(&k))?;
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
            show(c, &value, |list: KeyList| {
                list.keys.iter().try_for_each(print_key_line)?;
                if let Some(next) = list.next_cursor {
                    outln!("more: --cursor {next}");
                }
                Ok(())
            })?;
        }
        KeysCommand::Get { id } => {
            let value = call(c, Method::GET, &format!("/v1/keys/{}", segment(&id)), None).await?;
            show(c, &value, |k: KeyView| print_key(&k))?;
        }
        KeysCommand::Update {
            id,
            name,
            scopes,
            roles,
            no_roles,
            metadata,
            expires_at,
            no_expiry,
            enable,
            disable,
            limits,
            no_ratelimits,
            no_credits,
            any_ip,
            signing,
            no_signing,
        } => {
            // Clap keeps each `--no-…` flag apart from the values it
            // clears, so at most one of each pair is given.
            let body = KeyUpdate {
                name,
                scopes,
                roles: if no_roles { Some(Vec::new()) } else { roles },
                metadata: metadata
                    .map(|m| parse_json_arg("--metadata", &m))
                    .transpose()?,
                expires_at: if no_expiry {
                    Some(None)
                } else {
                    expires_at.map(Some)
                },
                enabled: (enable || disable).then_some(enable),
                ratelimits: if no_ratelimits {
                    Some(Vec::new())
                } else {
                    limits.ratelimits()?
                },
                credits: if no_credits {
                    Some(None)
                } else {
                    limits.credits()?.map(Some)
                },
                ip_allowlist: if any_ip {
                    Some(Vec::new())
                } else {
                    limits.ip_allowlist()
                },
                signing: if no_signing {
                    Some(None)
                } else {
                    signing.body()?.map(Some)
                },
            };
            let value = call(
                c,
                Method::PATCH,
                &format!("/v1/keys/{}", segment(&id)),
                Some(Body::of(&body)?),
            )
            .await?;
            show(c, &value, |k: KeyView| print_key(&k))?;
        }
        KeysCommand::Rotate { id, grace } => {
            let body = RotateRequest {
                grace_period_seconds: grace,
                expires_at: None,
            };
            let value = call(
                c,
                Method::POST,
                &format!("/v1/keys/{}/rotate", segment(&id)),
                Some(Body::of(&body)?),
            )
            .await?;
            show(c, &value, |k: IssuedKey| print_issued(&k))?;
        }
        KeysCommand::Revoke { id, reason } => {
            let body = RevokeRequest { reason };
            let value = call(
                c,
                Method::POST,
                &format!("/v1/keys/{}/revoke", segment(&id)),
                Some(Body::of(&body)?),
            )
            .await?;
            show(c, &value, |k: KeyView| print_key(&k))?;
        }
        KeysCommand::BulkRevoke {
            owner,
            api_id,
            environment,
            created_before,
            scope,
            reason,
        } => {
            let body = BulkRevokeRequest {
                owner,
                api_id,
                environment,
                created_before,
                scope,
                reason,
            };
            let value = call(
                c,
                Method::POST,
                "/v1/keys/bulk-revoke",
                Some(Body::of(&body)?),
            )
            .await?;
            show(c, &value, |r: BulkRevokeResult| {
                outln!("revoked {} keys", r.revoked);
                Ok(())
            })?;
        }
        KeysCommand::Verify {
            key,
            scopes,
            environment,
            ip,
            cost,
            otp,
        } => {
            let key = match key.as_deref() {
                None | Some("-") => read_key_from_stdin()?,
                Some(key) => key.to_owned(),
            };
            let body = VerifyRequest {
                key,
                scopes,
                environment,
                ip,
                cost,
                request: None,
                otp,
            };
            let value = call(c, Method::POST, "/v1/keys/verify", Some(Body::of(&body)?)).await?;
            // Read in both modes: the exit status says whether the key is
            // valid.
            let answer: VerifyAnswer = read(&value)?;
            if c.json {
                print_json(&value)?;
            } else {
                print_verify(&answer)?;
            }
            return Ok(if answer.valid {
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
            let body = OwnerRateLimits {
                ratelimits: parse_ratelimits(&ratelimits)?,
            };
            call(c, Method::PUT, &path, Some(Body::of(&body)?)).await?
        }
        OwnersCommand::Totp { owner } => {
            let path = format!("/v1/owners/{}/totp", segment(&owner));
            let value = call(c, Method::POST, &path, None).await?;
            show(c, &value, |t: keyward_proto::access::TotpEnrolled| {
                outln!("secret (shown once): {}", t.secret);
                outln!("uri: {}", t.otpauth_uri);
                outln!("confirm with: keyward owners totp-confirm {owner} CODE");
                Ok(())
            })?;
            return Ok(ExitCode::SUCCESS);
        }
        OwnersCommand::TotpConfirm { owner, otp } => {
            let path = format!("/v1/owners/{}/totp/confirm", segment(&owner));
            let body = keyward_proto::access::OtpBody { otp };
            call(c, Method::POST, &path, Some(Body::of(&body)?)).await?;
            outln!("confirmed: critical scopes of {owner}'s keys now need a code");
            return Ok(ExitCode::SUCCESS);
        }
        OwnersCommand::TotpRemove { owner } => {
            let path = format!("/v1/owners/{}/totp", segment(&owner));
            call(c, Method::DELETE, &path, None).await?;
            outln!("removed");
            return Ok(ExitCode::SUCCESS);
        }
    };
    show(c, &value, |owner: OwnerRateLimits| {
        if owner.ratelimits.is_empty() {
            outln!("no owner rate limits");
        }
        for l in owner.ratelimits {
            outln!("{}  {} per {} ms", l.name, l.limit, l.duration_ms);
        }
        Ok(())
    })?;
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
            workspaces,
            client_cert,
            expires_at,
        } => {
            let body = TokenCreate {
                name,
                scopes,
                api_ids,
                environments,
                workspaces,
                client_cert,
                expires_at,
            };
            let value = call(c, Method::POST, "/v1/tokens", Some(Body::of(&body)?)).await?;
            show(c, &value, |t: IssuedToken| {
                outln!(
                    "{}  {}  scopes={}",
                    t.record.id,
                    t.record.name,
                    join(&t.record.scopes)
                );
                outln!("token (shown once, store it now): {}", t.token);
                Ok(())
            })?;
        }
        TokensCommand::List => {
            let value = call(c, Method::GET, "/v1/tokens", None).await?;
            show(c, &value, |list: TokenList| {
                for t in list.tokens {
                    let state = if t.revoked_at.is_none() {
                        "active"
                    } else {
                        "revoked"
                    };
                    outln!(
                        "{}  {}  {}…  {state}  scopes={}",
                        t.id,
                        t.name,
                        t.start,
                        join(&t.scopes)
                    );
                }
                Ok(())
            })?;
        }
        TokensCommand::Revoke { id } => {
            let value = call(
                c,
                Method::POST,
                &format!("/v1/tokens/{}/revoke", segment(&id)),
                None,
            )
            .await?;
            show(c, &value, |t: TokenView| {
                outln!("{}  revoked", t.id);
                Ok(())
            })?;
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
            // Vault's KV v2 write body, which the KV engine reads.
            let mut body = json!({ "data": data });
            if let Some(cas) = cas {
                body["options"] = json!({ "cas": cas });
            }
            let value = call(
                c,
                Method::POST,
                &format!("/v1/{mount}/data/{path}"),
                Some(Body::of(&body)?),
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
                c.token.as_deref(),
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
                // Vault's KV v2 undelete body.
                Some(Body::of(&json!({ "versions": versions }))?),
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
            send(
                c,
                Method::GET,
                "/v1/sys/seal-status",
                None,
                c.token.as_deref(),
            )
            .await?
        }
        OperatorCommand::Init { shares, threshold } => {
            if let Some(why) = seal_type(c)
                .await
                .and_then(|kind| self_unsealing(&kind, "initialise"))
            {
                bail!(why);
            }
            let body = SealInit {
                secret_shares: shares,
                secret_threshold: threshold,
            };
            let value = call(c, Method::POST, "/v1/sys/init", Some(Body::of(&body)?)).await?;
            show(c, &value, |set: SealInitResult| {
                print_shares(&set)?;
                outln!(
                    "The server is initialised and sealed. These {shares} shares are shown \
                     once and kept nowhere: give each to a different operator. Any \
                     {threshold} of them unseal the server (`keyward operator unseal`) \
                     after every start."
                );
                Ok(())
            })?;
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
                UnsealRequest {
                    key: None,
                    reset: true,
                }
            } else {
                UnsealRequest {
                    key: Some(read_secret_line("unseal share")?),
                    reset: false,
                }
            };
            send(
                c,
                Method::POST,
                "/v1/sys/unseal",
                Some(Body::of(&body)?),
                c.token.as_deref(),
            )
            .await?
        }
        OperatorCommand::Seal => call(c, Method::POST, "/v1/sys/seal", None).await?,
        OperatorCommand::Rewrap => {
            let value = call(c, Method::POST, "/v1/sys/rewrap", None).await?;
            show(c, &value, |r: RewrapResult| {
                outln!(
                    "rewrapped {} data keys ({} already current, {} failed)",
                    r.data.moved,
                    r.data.current,
                    r.data.failed
                );
                Ok(())
            })?;
            return Ok(ExitCode::SUCCESS);
        }
        OperatorCommand::Rekey { shares, threshold } => {
            if std::io::stdin().is_terminal() {
                eprintln!("current unseal shares, one a line, then end of input:");
            }
            let keys: Vec<String> = std::io::stdin()
                .lock()
                .lines()
                .map_while(Result::ok)
                .map(|l| l.trim().to_owned())
                .filter(|l| !l.is_empty())
                .collect();
            let body = RekeyRequest {
                keys,
                secret_shares: Some(shares),
                secret_threshold: Some(threshold),
            };
            let value = call(c, Method::POST, "/v1/sys/rekey", Some(Body::of(&body)?)).await?;
            show(c, &value, |set: SealInitResult| {
                print_shares(&set)?;
                outln!(
                    "The master key was replaced; the old shares no longer unseal. These \
                     {shares} shares are shown once: any {threshold} of them unseal."
                );
                Ok(())
            })?;
            return Ok(ExitCode::SUCCESS);
        }
        OperatorCommand::Rotate => {
            let value = call(c, Method::POST, "/v1/sys/rotate", None).await?;
            show(c, &value, |r: KeyringRotated| {
                outln!("keyring version {}", r.keyring_version);
                Ok(())
            })?;
            return Ok(ExitCode::SUCCESS);
        }
    };
    show(c, &status, |status: SealStatusView| {
        let state = if !status.initialized {
            "not initialised".to_owned()
        } else if status.sealed {
            format!("sealed (unseal progress {}/{})", status.progress, status.t)
        } else {
            let version = status
                .keyring_version
                .map_or_else(|| "-".to_owned(), |v| v.to_string());
            format!("unsealed (keyring version {version})")
        };
        outln!("seal: {}  {state}", status.kind);
        Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// A request body, encoded from its proto type before the request is
/// built, so that a value JSON cannot hold is reported as such rather than
/// as a failure to reach the server.
pub(crate) struct Body(Vec<u8>);

impl Body {
    pub(crate) fn of(value: &impl Serialize) -> anyhow::Result<Body> {
        serde_json::to_vec(value)
            .map(Body)
            .context("cannot encode the request body")
    }
}

/// Sends one request and returns the JSON body, or the server's error as
/// `CODE: message`.
pub(crate) async fn call(
    c: &Server<'_>,
    method: Method,
    path: &str,
    body: Option<Body>,
) -> anyhow::Result<Value> {
    let Some(token) = c.token.as_deref() else {
        bail!("no admin token: set KEYWARD_TOKEN, pass --token, or sign in with `keyward login`");
    };
    send(c, method, path, body, Some(token)).await
}

/// Like [`call`], for the few endpoints that need no token (seal status and
/// unseal); sends the token when there is one.
pub(crate) async fn send(
    c: &Server<'_>,
    method: Method,
    path: &str,
    body: Option<Body>,
    token: Option<&str>,
) -> anyhow::Result<Value> {
    let url = format!("{}{}", c.addr.trim_end_matches('/'), path);
    let mut request = c.http.request(method, &url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(Body(bytes)) = body {
        request = request
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(bytes);
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

/// An answer read as the proto type the server writes it from.
pub(crate) fn read_value<T: DeserializeOwned>(value: &Value) -> anyhow::Result<T> {
    read(value)
}

fn read<T: DeserializeOwned>(value: &Value) -> anyhow::Result<T> {
    T::deserialize(value).context("the server's answer is not in the shape this client reads")
}

/// Prints an answer: with `--json` as the server sent it, otherwise read
/// as `T` and summarised for people.
pub(crate) fn show<T: DeserializeOwned>(
    c: &Server<'_>,
    value: &Value,
    summary: impl FnOnce(T) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    if c.json {
        print_json(value)?;
        return Ok(());
    }
    summary(read(value)?)
}

/// A refusal from the server, kept whole so a command can say more about
/// the answers it knows (a deleted secret version, a seal that does not
/// take shares).
#[derive(Debug)]
pub(crate) struct ServerError {
    status: reqwest::StatusCode,
    /// Keyward's stable `code`, when the answer has one.
    pub(crate) code: Option<String>,
    /// What the server said: Keyward's `error.message`, else Vault's
    /// `errors` array, else the status's reason.
    message: String,
    body: Value,
}

impl ServerError {
    fn new(status: reqwest::StatusCode, body: Value) -> Self {
        let keyward = ErrorResponse::deserialize(&body).ok().map(|e| e.error);
        let vault: Vec<&str> = body["errors"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .filter(|m| !m.is_empty())
            .collect();
        let message = match &keyward {
            Some(e) if !e.message.is_empty() => e.message.clone(),
            _ if !vault.is_empty() => vault.join("; "),
            _ => status
                .canonical_reason()
                .unwrap_or("the server refused the request")
                .to_lowercase(),
        };
        let code = keyward.map(|e| e.code);
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
    if meta["destroyed"].as_bool() == Some(true) {
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
    read::<SealStatusView>(&status).ok().map(|s| s.kind)
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

pub(crate) fn read_secret_line(what: &str) -> anyhow::Result<String> {
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
pub(crate) fn segment(s: &str) -> PercentEncode<'_> {
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

/// A string of a Vault-shaped answer, or `-`.
fn text(v: &Value) -> &str {
    v.as_str().unwrap_or("-")
}

/// Items joined with commas, or `-` for none.
pub(crate) fn join<T: AsRef<str>>(items: &[T]) -> String {
    if items.is_empty() {
        "-".to_owned()
    } else {
        items
            .iter()
            .map(AsRef::as_ref)
            .collect::<Vec<&str>>()
            .join(",")
    }
}

/// A time as the server writes it.
pub(crate) fn time_text(at: OffsetDateTime) -> String {
    at.format(&Rfc3339).unwrap_or_else(|_| at.to_string())
}

fn print_json(v: &Value) -> std::io::Result<()> {
    outln!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
    Ok(())
}

fn print_api(api: &ApiView) -> anyhow::Result<()> {
    let environments: Vec<&str> = api.environments.iter().map(|e| e.as_str()).collect();
    outln!(
        "{}  {}  prefix={}  environments={}",
        api.id,
        api.name,
        api.prefix,
        join(&environments)
    );
    for (role, scopes) in &api.roles {
        outln!("  role {role}: {}", join(scopes));
    }
    if !api.critical_scopes.is_empty() {
        outln!("  critical scopes: {}", join(&api.critical_scopes));
    }
    Ok(())
}

/// A `--role NAME=SCOPE,SCOPE…` flag: the name and its scopes (none after
/// a bare `NAME=`). The server checks both.
fn parse_role(arg: &str) -> Result<(String, Vec<String>), String> {
    let (name, scopes) = arg.split_once('=').ok_or_else(|| {
        "expected NAME=SCOPE,SCOPE…, e.g. trader=prices:read,orders:write".to_owned()
    })?;
    let scopes = scopes
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    Ok((name.trim().to_owned(), scopes))
}

fn print_key_line(k: &KeyView) -> anyhow::Result<()> {
    outln!(
        "{}  {}…  {}  {}  owner={}  scopes={}",
        k.id,
        k.start,
        k.environment,
        k.state.as_str(),
        k.owner,
        join(&k.scopes)
    );
    Ok(())
}

fn print_key(k: &KeyView) -> anyhow::Result<()> {
    print_key_line(k)?;
    let fields = [
        ("name", Some(k.name.clone())),
        ("roles", (!k.roles.is_empty()).then(|| join(&k.roles))),
        ("expires_at", k.expires_at.map(time_text)),
        ("revoked_at", k.revoked_at.map(time_text)),
        ("revoke_reason", k.revoke_reason.clone()),
        (
            "rotated_from",
            k.rotated_from.as_ref().map(ToString::to_string),
        ),
        ("rotated_to", k.rotated_to.as_ref().map(ToString::to_string)),
    ];
    for (field, v) in fields {
        if let Some(v) = v {
            outln!("  {field}: {v}");
        }
    }
    Ok(())
}

fn print_issued(k: &IssuedKey) -> anyhow::Result<()> {
    print_key_line(&k.record)?;
    outln!("key (shown once, store it now): {}", k.key);
    if let Some(secret) = &k.signing_secret {
        outln!("signing secret (shown once, store it now): {secret}");
    }
    Ok(())
}

fn print_verify(v: &VerifyAnswer) -> anyhow::Result<()> {
    let mut line = v.code.as_str().to_owned();
    if let Some(id) = &v.key_id {
        line.push_str(&format!(
            "  {id}  owner={}  env={}  scopes={}",
            v.owner.as_deref().unwrap_or("-"),
            v.environment.map_or("-", Environment::as_str),
            join(v.scopes.as_deref().unwrap_or_default())
        ));
    }
    if let Some(limit) = &v.ratelimit {
        line.push_str(&format!("  ratelimit={}/{}", limit.remaining, limit.limit));
    }
    if let Some(credits) = v.credits_remaining {
        line.push_str(&format!("  credits={credits}"));
    }
    outln!("{line}");
    Ok(())
}

fn print_shares(set: &SealInitResult) -> anyhow::Result<()> {
    for (i, key) in set.keys.iter().enumerate() {
        outln!("Unseal share {}: {key}", i + 1);
    }
    outln!();
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
