//! People: signing in (`login`, `logout`), the second factor and step-up
//! (`auth`), users, workspaces, roles and the access review. Each command
//! is one or two admin API calls, as in `client`.
//!
//! `keyward login` keeps the session in a file of its own (0600):
//! `KEYWARD_SESSION_FILE`, else `$XDG_CONFIG_HOME/keyward/session.json`,
//! else `~/.config/keyward/session.json`. Every client command uses it for
//! the server it was made for when no `--token` or `KEYWARD_TOKEN` is
//! given.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use keyward_core::Environment;
use keyward_proto::access::{
    AccessReview, GrantBody, LoginAnswer, LoginRequest, OtpBody, RecoveryCodes, RoleList, RolePut,
    RoleView, SessionList, SteppedUp, TotpEnrolled, UserCreate, UserList, UserUpdate, UserView,
    WhoAmI, WorkspaceCreate, WorkspaceList, WorkspaceView,
};
use reqwest::Method;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::client::{
    call, join, parse_environment, read_secret_line, segment, send, show, time_text, Body, Conn,
    Server, ServerError,
};
use crate::output::outln;

/// A session as `keyward login` keeps it.
#[derive(Serialize, Deserialize)]
struct StoredSession {
    addr: String,
    token: String,
    #[serde(with = "time::serde::rfc3339")]
    expires_at: OffsetDateTime,
}

fn session_file() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("KEYWARD_SESSION_FILE") {
        return Some(PathBuf::from(path));
    }
    let config = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(config.join("keyward").join("session.json"))
}

/// The session `keyward login` stored for the server at `addr`, while it
/// lasts.
pub(crate) fn stored_session(addr: &str) -> Option<String> {
    let text = std::fs::read_to_string(session_file()?).ok()?;
    let stored: StoredSession = serde_json::from_str(&text).ok()?;
    (stored.addr.trim_end_matches('/') == addr.trim_end_matches('/')
        && stored.expires_at > OffsetDateTime::now_utc())
    .then_some(stored.token)
}

fn store_session(stored: &StoredSession) -> anyhow::Result<PathBuf> {
    let path = session_file().context("no place for the session: set KEYWARD_SESSION_FILE")?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let text = serde_json::to_vec(stored).context("cannot encode the session")?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(&path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    std::io::Write::write_all(&mut file, &text)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

/// A password: `KEYWARD_PASSWORD` when set, else asked for (without echo
/// on a terminal), else a line of standard input.
fn read_password(what: &str) -> anyhow::Result<String> {
    if let Ok(password) = std::env::var("KEYWARD_PASSWORD") {
        return Ok(password);
    }
    if std::io::stdin().is_terminal() {
        return rpassword::prompt_password(format!("{what}: "))
            .with_context(|| format!("cannot read the {what}"));
    }
    read_secret_line(what)
}

#[derive(Args)]
pub struct LoginArgs {
    #[command(flatten)]
    conn: Conn,
    /// The user's e-mail.
    #[arg(long)]
    email: String,
    /// The current TOTP code (or a recovery code); asked for when the user
    /// has TOTP and none is given.
    #[arg(long)]
    otp: Option<String>,
}

/// Signs in and keeps the session for later commands.
pub async fn login(args: LoginArgs) -> anyhow::Result<ExitCode> {
    let c = &args.conn.connect()?;
    let password = read_password("password")?;
    let mut request = LoginRequest {
        email: args.email.clone(),
        password,
        otp: args.otp.clone(),
    };
    let answer = match sign_in(c, &request).await {
        Err(e) if needs_code(&e) && request.otp.is_none() => {
            request.otp = Some(read_secret_line("TOTP code")?);
            sign_in(c, &request).await?
        }
        other => other?,
    };
    let session: LoginAnswer = crate::client::read_value(&answer)?;
    let path = store_session(&StoredSession {
        addr: c.addr.to_owned(),
        token: session.token.clone(),
        expires_at: session.expires_at,
    })?;
    show(c, &answer, |s: LoginAnswer| {
        outln!(
            "signed in as {} until {} (session {}, kept in {})",
            s.user.email,
            time_text(s.expires_at),
            s.session_id,
            path.display()
        );
        Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

async fn sign_in(c: &Server<'_>, request: &LoginRequest) -> anyhow::Result<serde_json::Value> {
    send(
        c,
        Method::POST,
        "/v1/auth/login",
        Some(Body::of(request)?),
        None,
    )
    .await
}

fn needs_code(e: &anyhow::Error) -> bool {
    e.downcast_ref::<ServerError>()
        .is_some_and(|e| e.code.as_deref() == Some("MFA_REQUIRED"))
}

#[derive(Args)]
pub struct LogoutArgs {
    #[command(flatten)]
    conn: Conn,
}

/// Ends the stored session (or the one `--token` names) and forgets it.
pub async fn logout(args: LogoutArgs) -> anyhow::Result<ExitCode> {
    let c = &args.conn.connect()?;
    call(c, Method::POST, "/v1/auth/logout", None).await?;
    if let Some(path) = session_file() {
        let _ = std::fs::remove_file(path);
    }
    outln!("signed out");
    Ok(ExitCode::SUCCESS)
}

#[derive(Args)]
pub struct AuthArgs {
    #[command(flatten)]
    conn: Conn,
    #[command(subcommand)]
    command: AuthCommand,
}

#[derive(Subcommand)]
enum AuthCommand {
    /// Who the token or session is, with its grants.
    Whoami,
    /// Start a TOTP enrolment: shows the secret and the otpauth:// URI for
    /// an authenticator app.
    Totp,
    /// Confirm the enrolment with the app's first code; shows the ten
    /// recovery codes once.
    TotpConfirm { code: String },
    /// Give a second factor now, for the critical operations of the next
    /// minutes (asked for when not given).
    StepUp { code: Option<String> },
}

pub async fn auth(args: AuthArgs) -> anyhow::Result<ExitCode> {
    let c = &args.conn.connect()?;
    match args.command {
        AuthCommand::Whoami => {
            let value = call(c, Method::GET, "/v1/auth/whoami", None).await?;
            show(c, &value, |me: WhoAmI| {
                match &me.user {
                    Some(user) => outln!(
                        "{}  {}  totp={}",
                        user.email,
                        user.id,
                        if user.totp_enrolled { "yes" } else { "no" }
                    ),
                    None => outln!("service token {}", me.token_id),
                }
                outln!("scopes: {}", join(&me.scopes));
                for g in &me.grants {
                    outln!(
                        "grant: {} in {}{}",
                        g.role,
                        g.workspace.as_deref().unwrap_or("every workspace"),
                        environments_text(g.environments.as_deref())
                    );
                }
                if let Some(at) = me.stepped_up_at {
                    outln!("stepped up at {}", time_text(at));
                }
                Ok(())
            })?;
        }
        AuthCommand::Totp => {
            let value = call(c, Method::POST, "/v1/auth/totp", None).await?;
            show(c, &value, |e: TotpEnrolled| {
                outln!("secret: {}", e.secret);
                outln!("uri:    {}", e.otpauth_uri);
                outln!("add it to an authenticator app, then: keyward auth totp-confirm CODE");
                Ok(())
            })?;
        }
        AuthCommand::TotpConfirm { code } => {
            let value = call(
                c,
                Method::POST,
                "/v1/auth/totp/confirm",
                Some(Body::of(&OtpBody { otp: code })?),
            )
            .await?;
            show(c, &value, |r: RecoveryCodes| {
                outln!("TOTP is on. Recovery codes (shown once, each works once):");
                for code in &r.recovery_codes {
                    outln!("  {code}");
                }
                Ok(())
            })?;
        }
        AuthCommand::StepUp { code } => {
            let otp = match code {
                Some(code) => code,
                None => read_secret_line("TOTP code")?,
            };
            let value = call(
                c,
                Method::POST,
                "/v1/auth/step-up",
                Some(Body::of(&OtpBody { otp })?),
            )
            .await?;
            show(c, &value, |s: SteppedUp| {
                outln!("stepped up until {}", time_text(s.stepped_up_until));
                Ok(())
            })?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn environments_text(envs: Option<&[Environment]>) -> String {
    match envs {
        None => String::new(),
        Some(envs) => format!(
            " ({})",
            envs.iter()
                .map(|e| e.as_str())
                .collect::<Vec<_>>()
                .join(",")
        ),
    }
}

/// A grant as `ROLE[@WORKSPACE][:ENV,ENV]`: `operator@desk:test,dev`.
fn parse_grant(spec: &str) -> Result<GrantBody, String> {
    let (rest, environments) = match spec.split_once(':') {
        Some((rest, envs)) => (
            rest,
            Some(
                envs.split(',')
                    .map(parse_environment)
                    .collect::<Result<Vec<_>, _>>()?,
            ),
        ),
        None => (spec, None),
    };
    let (role, workspace) = match rest.split_once('@') {
        Some((role, workspace)) => (role, Some(workspace.to_owned())),
        None => (rest, None),
    };
    if role.is_empty() {
        return Err("a grant is ROLE[@WORKSPACE][:ENV,ENV], e.g. operator@desk:test".into());
    }
    Ok(GrantBody {
        role: role.to_owned(),
        workspace,
        environments,
    })
}

#[derive(Args)]
pub struct UsersArgs {
    #[command(flatten)]
    conn: Conn,
    #[command(subcommand)]
    command: UsersCommand,
}

#[derive(Subcommand)]
enum UsersCommand {
    /// Create a user; the password is asked for (or `KEYWARD_PASSWORD`).
    Create {
        #[arg(long)]
        email: String,
        /// A grant, ROLE[@WORKSPACE][:ENV,ENV]; repeat for several.
        #[arg(long = "role", value_parser = parse_grant)]
        roles: Vec<GrantBody>,
    },
    /// List users.
    List,
    /// Replace a user's grants.
    Grant {
        /// User id or e-mail.
        user: String,
        #[arg(long = "role", value_parser = parse_grant)]
        roles: Vec<GrantBody>,
    },
    /// Disable a user: its sessions end at once.
    Disable { user: String },
    /// Enable a disabled user.
    Enable { user: String },
    /// Set a new password (asked for, or `KEYWARD_PASSWORD`); the user's
    /// sessions end.
    ResetPassword { user: String },
    /// A user's sessions.
    Sessions { user: String },
}

pub async fn users(args: UsersArgs) -> anyhow::Result<ExitCode> {
    let c = &args.conn.connect()?;
    match args.command {
        UsersCommand::Create { email, roles } => {
            let password = read_password("new password")?;
            let body = UserCreate {
                email,
                password,
                roles,
            };
            let value = call(c, Method::POST, "/v1/users", Some(Body::of(&body)?)).await?;
            show(c, &value, |u: UserView| print_user(&u))?;
        }
        UsersCommand::List => {
            let value = call(c, Method::GET, "/v1/users?limit=1000", None).await?;
            show(c, &value, |list: UserList| {
                for u in &list.users {
                    print_user(u)?;
                }
                Ok(())
            })?;
        }
        UsersCommand::Grant { user, roles } => {
            let update = UserUpdate {
                roles: Some(roles),
                ..UserUpdate::default()
            };
            patch_user(c, &user, &update).await?;
        }
        UsersCommand::Disable { user } => {
            let update = UserUpdate {
                disabled: Some(true),
                ..UserUpdate::default()
            };
            patch_user(c, &user, &update).await?;
        }
        UsersCommand::Enable { user } => {
            let update = UserUpdate {
                disabled: Some(false),
                ..UserUpdate::default()
            };
            patch_user(c, &user, &update).await?;
        }
        UsersCommand::ResetPassword { user } => {
            let update = UserUpdate {
                password: Some(read_password("new password")?),
                ..UserUpdate::default()
            };
            patch_user(c, &user, &update).await?;
        }
        UsersCommand::Sessions { user } => {
            let id = user_id(c, &user).await?;
            let path = format!("/v1/users/{}/sessions", segment(&id));
            let value = call(c, Method::GET, &path, None).await?;
            show(c, &value, |list: SessionList| {
                for s in &list.sessions {
                    let state = if s.revoked_at.is_some() {
                        "revoked"
                    } else if s
                        .expires_at
                        .is_some_and(|at| at <= OffsetDateTime::now_utc())
                    {
                        "expired"
                    } else {
                        "active"
                    };
                    outln!(
                        "{}  {}  {state}  since {}",
                        s.id,
                        s.start,
                        time_text(s.created_at)
                    );
                }
                Ok(())
            })?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn patch_user(c: &Server<'_>, user: &str, update: &UserUpdate) -> anyhow::Result<()> {
    let id = user_id(c, user).await?;
    let path = format!("/v1/users/{}", segment(&id));
    let value = call(c, Method::PATCH, &path, Some(Body::of(update)?)).await?;
    show(c, &value, |u: UserView| print_user(&u))
}

/// The id of a user named by id or e-mail.
async fn user_id(c: &Server<'_>, user: &str) -> anyhow::Result<String> {
    if !user.contains('@') {
        return Ok(user.to_owned());
    }
    let value = call(c, Method::GET, "/v1/users?limit=1000", None).await?;
    let list: UserList = crate::client::read_value(&value)?;
    let wanted = user.trim().to_lowercase();
    match list.users.into_iter().find(|u| u.email == wanted) {
        Some(u) => Ok(u.id.as_str().to_owned()),
        None => bail!("no user {user} among those this token sees"),
    }
}

fn print_user(u: &UserView) -> anyhow::Result<()> {
    let roles: Vec<String> = u
        .roles
        .iter()
        .map(|g| {
            let mut text = g.role.clone();
            if let Some(w) = &g.workspace {
                text.push('@');
                text.push_str(w);
            }
            if let Some(envs) = &g.environments {
                text.push(':');
                text.push_str(
                    &envs
                        .iter()
                        .map(|e| e.as_str())
                        .collect::<Vec<_>>()
                        .join(","),
                );
            }
            text
        })
        .collect();
    outln!(
        "{}  {}  roles={}  totp={}{}",
        u.id,
        u.email,
        if roles.is_empty() {
            "-".to_owned()
        } else {
            roles.join(",")
        },
        if u.totp_enrolled { "yes" } else { "no" },
        if u.disabled { "  disabled" } else { "" }
    );
    Ok(())
}

#[derive(Args)]
pub struct WorkspacesArgs {
    #[command(flatten)]
    conn: Conn,
    #[command(subcommand)]
    command: WorkspacesCommand,
}

#[derive(Subcommand)]
enum WorkspacesCommand {
    /// Create a workspace.
    Create { name: String },
    /// List the workspaces this token reaches.
    List,
}

pub async fn workspaces(args: WorkspacesArgs) -> anyhow::Result<ExitCode> {
    let c = &args.conn.connect()?;
    match args.command {
        WorkspacesCommand::Create { name } => {
            let body = WorkspaceCreate { name };
            let value = call(c, Method::POST, "/v1/workspaces", Some(Body::of(&body)?)).await?;
            show(c, &value, |w: WorkspaceView| {
                outln!("{}", w.name);
                Ok(())
            })?;
        }
        WorkspacesCommand::List => {
            let value = call(c, Method::GET, "/v1/workspaces", None).await?;
            show(c, &value, |list: WorkspaceList| {
                for w in &list.workspaces {
                    outln!("{}  created {}", w.name, time_text(w.created_at));
                }
                Ok(())
            })?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Args)]
pub struct RolesArgs {
    #[command(flatten)]
    conn: Conn,
    #[command(subcommand)]
    command: RolesCommand,
}

#[derive(Subcommand)]
enum RolesCommand {
    /// The built-in roles and the custom ones, with their scopes.
    List,
    /// Create or replace a custom role.
    Put {
        name: String,
        #[arg(long = "scope", required = true)]
        scopes: Vec<String>,
    },
    /// Delete a custom role no user holds.
    Delete { name: String },
}

pub async fn roles(args: RolesArgs) -> anyhow::Result<ExitCode> {
    let c = &args.conn.connect()?;
    match args.command {
        RolesCommand::List => {
            let value = call(c, Method::GET, "/v1/roles", None).await?;
            show(c, &value, |list: RoleList| {
                for r in &list.roles {
                    print_role(r)?;
                }
                Ok(())
            })?;
        }
        RolesCommand::Put { name, scopes } => {
            let path = format!("/v1/roles/{}", segment(&name));
            let value = call(c, Method::PUT, &path, Some(Body::of(&RolePut { scopes })?)).await?;
            show(c, &value, |r: RoleView| print_role(&r))?;
        }
        RolesCommand::Delete { name } => {
            let path = format!("/v1/roles/{}", segment(&name));
            call(c, Method::DELETE, &path, None).await?;
            outln!("deleted role {name}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_role(r: &RoleView) -> anyhow::Result<()> {
    outln!(
        "{}{}  {}{}",
        r.name,
        if r.builtin { " (built-in)" } else { "" },
        join(&r.scopes),
        environments_text(r.environments.as_deref())
    );
    Ok(())
}

#[derive(Args)]
pub struct AccessReviewArgs {
    #[command(flatten)]
    conn: Conn,
}

/// Who holds what where: every user and service token.
pub async fn access_review(args: AccessReviewArgs) -> anyhow::Result<ExitCode> {
    let c = &args.conn.connect()?;
    let value = call(c, Method::GET, "/v1/access-review", None).await?;
    show(c, &value, |review: AccessReview| {
        for s in &review.subjects {
            let grants: Vec<String> = s
                .grants
                .iter()
                .map(|g| {
                    format!(
                        "{} in {}{}",
                        g.role,
                        g.workspace.as_deref().unwrap_or("all"),
                        environments_text(g.environments.as_deref())
                    )
                })
                .collect();
            outln!(
                "{:5}  {}  {}  totp={}  last_seen={}  {}{}",
                s.kind,
                s.id,
                s.name,
                if s.totp_enrolled { "yes" } else { "no" },
                s.last_seen_at.map(time_text).unwrap_or_else(|| "-".into()),
                grants.join("; "),
                if s.disabled { "  disabled" } else { "" }
            );
        }
        Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}
