//! The `keyward` command: runs the server (`serve`) and talks to a running
//! one over HTTP (`apis`, `keys`, `tokens`). The reusable parts live in the
//! library crates; this crate parses arguments, reads configuration and
//! prints.

#![forbid(unsafe_code)]

mod audit;
mod client;
mod output;
mod people;
mod recover;
mod scan;
mod serve;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// mimalloc instead of the system allocator: the hot path's short-lived
/// allocations are cheaper, and a million cached keys take less memory.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Keyward: API keys for crypto API providers — issue, verify, rotate, revoke.
#[derive(Parser)]
#[command(name = "keyward", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve(serve::ServeArgs),
    /// Run a reverse proxy that verifies keys in front of your API.
    Gateway(serve::GatewayArgs),
    /// Manage APIs (each with its own key prefix).
    Apis(client::ApisArgs),
    /// Issue, inspect, change, rotate, revoke and verify API keys.
    Keys(client::KeysArgs),
    /// Rate limits shared by all keys of an owner.
    Owners(client::OwnersArgs),
    /// Manage admin tokens.
    Tokens(client::TokensArgs),
    /// Sign in as an admin user; later commands use the session.
    Login(people::LoginArgs),
    /// End the session `login` stored.
    Logout(people::LogoutArgs),
    /// Your session: who you are, TOTP enrolment, step-up.
    Auth(people::AuthArgs),
    /// Admin users and their roles.
    Users(people::UsersArgs),
    /// Workspaces, which hold APIs.
    Workspaces(people::WorkspacesArgs),
    /// Built-in and custom roles.
    Roles(people::RolesArgs),
    /// Who holds which role and scopes where.
    AccessReview(people::AccessReviewArgs),
    /// The seal: status, init, unseal, seal, keyring rotation.
    Operator(client::OperatorArgs),
    /// Secrets in KV v2 mounts: put, get, list, delete.
    Secrets(client::SecretsArgs),
    /// Find leaked secrets in files, standard input and git history.
    Scan(scan::ScanArgs),
    /// The audit log's hash chain: verify it offline, or ask its status.
    Audit(audit::AuditArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let outcome = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => serve::run(args).await.map(|()| ExitCode::SUCCESS),
            Command::Gateway(args) => serve::gateway(args).await.map(|()| ExitCode::SUCCESS),
            Command::Apis(args) => client::apis(args).await,
            Command::Operator(args) => client::operator(args).await,
            Command::Secrets(args) => client::secrets(args).await,
            Command::Keys(args) => client::keys(args).await,
            Command::Owners(args) => client::owners(args).await,
            Command::Tokens(args) => client::tokens(args).await,
            Command::Login(args) => people::login(args).await,
            Command::Logout(args) => people::logout(args).await,
            Command::Auth(args) => people::auth(args).await,
            Command::Users(args) => people::users(args).await,
            Command::Workspaces(args) => people::workspaces(args).await,
            Command::Roles(args) => people::roles(args).await,
            Command::AccessReview(args) => people::access_review(args).await,
            // Threads and files; only --report is async.
            Command::Scan(args) => scan::run(args).await,
            Command::Audit(args) => audit::run(args).await,
        }
    });
    match outcome {
        Ok(code) => code,
        // The reader of our output has gone (`keyward keys list | head`):
        // nothing is left to say, and no one to say it to.
        Err(e) if output::is_closed_stdout(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed() {
        super::Cli::command().debug_assert();
    }
}
