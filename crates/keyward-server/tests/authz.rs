//! Who may do what, tried against the real server: every documented route
//! (and every KV v2 and transit route, dispatched from the router's
//! fallback) with a token in each state that must not be enough — none,
//! garbage, revoked, expired, lacking the route's scope, limited to another
//! API, limited to another environment, child of a revoked parent. The
//! matrix is generated from [`rows`]; a route in the OpenAPI document
//! without a row fails the test, so a new route cannot ship without a rule.
//! Beside it, the attacks on reach one at a time: node-wide operations with
//! a limited `sys:write` token, owner limits, and mount existence without a
//! token.

#![allow(clippy::unwrap_used, clippy::expect_used)] // A panic in a test is a failed test.

mod support;

use std::collections::{BTreeMap, BTreeSet};

use keyward_core::BuiltinRole;
use keyward_core::{ApiId, Environment, KeyId, PlaintextKey, Prefix, TokenId, UserId};
use keyward_service::seal::{SealSettings, SealType};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use support::{enrol, fresh_store, session, spawn_sealed, Backend, TestApp, PASSWORD};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Every admin scope; the tokens of the matrix hold all of them but what
/// their state takes away.
const ALL_SCOPES: [&str; 16] = [
    "apis:read",
    "apis:write",
    "keys:read",
    "keys:write",
    "keys:verify",
    "tokens:read",
    "tokens:write",
    "audit:read",
    "sys:write",
    "secrets:read",
    "secrets:write",
    "transit:use",
    "transit:write",
    "leaks:report",
    "users:read",
    "users:write",
];

/// The scope of routes any valid token may call (its own session, who it
/// is): what they answer depends on whether the token is a session.
const ANY: &str = "any token";

/// A token state the matrix tries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum State {
    NoToken,
    Garbage,
    Revoked,
    Expired,
    LacksScope,
    OtherApi,
    OtherEnvironment,
    OtherWorkspace,
    ChildOfRevoked,
}

const STATES: [State; 9] = [
    State::NoToken,
    State::Garbage,
    State::Revoked,
    State::Expired,
    State::LacksScope,
    State::OtherApi,
    State::OtherEnvironment,
    State::OtherWorkspace,
    State::ChildOfRevoked,
];

/// What a cell must answer.
#[derive(Clone, Copy, Debug)]
enum Expect {
    /// Any 2xx.
    Ok,
    /// Any 2xx, and the body does not mention this placeholder's value (a
    /// listing filtered by reach).
    OkHiding(&'static str),
    /// This status and error `code`.
    Refused(u16, &'static str),
    /// `404 NOT_FOUND`, and exactly what the same token hears for the row's
    /// `absent` path: an out-of-reach record looks absent.
    Absent,
    /// A verify answer (200) with this verify code.
    Verify(&'static str),
    /// Past every access check: any answer but 401, 403 or 500 (what the
    /// operation itself then says — done, conflict, bad input — is not the
    /// matrix's business).
    Authorized,
    /// This status with Vault's `{"errors": [...]}` body.
    VaultRefused(u16),
}

const UNAUTHENTICATED: Expect = Expect::Refused(401, "UNAUTHENTICATED");
const FORBIDDEN: Expect = Expect::Refused(403, "FORBIDDEN");
const NOT_FOUND: Expect = Expect::Refused(404, "NOT_FOUND");
const INVALID: Expect = Expect::Refused(400, "INVALID_REQUEST");

/// One route's rule. Paths and bodies name fixtures as `{KEY}`, `{API}`,
/// `{TOKEN}`, `{ROOT_ID}`, `{MOUNT}`, `{TK}`, `{CT}`, `{PLAIN}`, `{LEAKED}`,
/// `{ABSENT_KEY}`, `{ABSENT_API}`, `{ABSENT_TOKEN}` and `{ROW}` (the row's
/// number, so destructive rows work on records of their own).
struct Row {
    method: &'static str,
    /// The route as the OpenAPI document spells it.
    template: &'static str,
    path: &'static str,
    body: Option<&'static str>,
    /// The scope the route needs; `None` for routes that need no token.
    scope: Option<&'static str>,
    /// For a route without a token, what every state hears.
    public: Expect,
    other_api: Expect,
    other_environment: Expect,
    /// A token limited to another workspace (the fixtures are in
    /// `default`); as for another API unless the row says.
    other_workspace: Expect,
    /// A session whose user's grant is in another workspace, where it
    /// differs from a service token's answer.
    session_workspace: Option<Expect>,
    /// A session whose user's grant is in another environment, where it
    /// differs from a service token's answer.
    session_environment: Option<Expect>,
    /// What a session of a user holding the route's scope hears, on an
    /// [`ANY`] route.
    as_session: Expect,
    /// The same request on a record that does not exist, for `Absent`.
    absent: Option<&'static str>,
    /// A Vault route that reads the token itself: any usable token is
    /// served, any other state hears Vault's 403.
    vault_self: bool,
}

impl Row {
    const fn in_other_workspace(mut self, expect: Expect) -> Row {
        self.other_workspace = expect;
        self
    }

    const fn for_sessions_in_other_workspace(mut self, expect: Expect) -> Row {
        self.session_workspace = Some(expect);
        self
    }

    const fn for_sessions_in_other_environment(mut self, expect: Expect) -> Row {
        self.session_environment = Some(expect);
        self
    }

    const fn answering_sessions(mut self, expect: Expect) -> Row {
        self.as_session = expect;
        self
    }

    const fn public_answer(mut self, expect: Expect) -> Row {
        self.public = expect;
        self
    }
}

#[allow(clippy::too_many_arguments)] // Each call is one row of the table, its columns in order.
const fn admin(
    method: &'static str,
    template: &'static str,
    path: &'static str,
    body: Option<&'static str>,
    scope: &'static str,
    other_api: Expect,
    other_environment: Expect,
    absent: Option<&'static str>,
) -> Row {
    Row {
        method,
        template,
        path,
        body,
        scope: Some(scope),
        public: Expect::Ok,
        other_api,
        other_environment,
        other_workspace: other_api,
        session_workspace: None,
        session_environment: None,
        as_session: Expect::Authorized,
        absent,
        vault_self: false,
    }
}

const fn public(method: &'static str, template: &'static str, body: Option<&'static str>) -> Row {
    Row {
        method,
        template,
        path: template,
        body,
        scope: None,
        public: Expect::Ok,
        other_api: Expect::Ok,
        other_environment: Expect::Ok,
        other_workspace: Expect::Ok,
        session_workspace: None,
        session_environment: None,
        as_session: Expect::Ok,
        absent: None,
        vault_self: false,
    }
}

/// A Vault route about the presented token itself.
const fn vault_self(method: &'static str, template: &'static str) -> Row {
    Row {
        vault_self: true,
        ..public(method, template, None)
    }
}

/// The table. KV rows work on the live mount `{MOUNT}`, which binds no API;
/// transit rows on the live key `{TK}` of the API `{API}`.
fn rows() -> Vec<Row> {
    use Expect::*;
    let kv = |method, template: &'static str, path, body, scope, absent| {
        admin(
            method,
            template,
            path,
            body,
            scope,
            Ok,
            Absent,
            Some(absent),
        )
    };
    let transit = |method, template, path, body, scope, absent| {
        admin(
            method,
            template,
            path,
            body,
            scope,
            Absent,
            Absent,
            Some(absent),
        )
    };
    vec![
        public("GET", "/health", None),
        public("GET", "/ready", None),
        public("GET", "/v1/sys/seal-status", None),
        public("GET", "/v1/sys/health", None),
        public("GET", "/v1/sys/init", None),
        vault_self("GET", "/v1/auth/token/lookup-self"),
        public("POST", "/v1/sys/unseal", Some(r#"{"reset": true}"#)),
        // Keys.
        admin(
            "POST",
            "/v1/keys",
            "/v1/keys",
            Some(
                r#"{"api_id": "{API}", "environment": "live", "owner": "acme", "scopes": ["prices:read"]}"#,
            ),
            "keys:write",
            NOT_FOUND,
            // The token's own environments are no secret, and the refusal
            // comes before the API is looked up: it says what to use.
            FORBIDDEN,
            None,
        ),
        admin(
            "GET",
            "/v1/keys",
            "/v1/keys",
            None,
            "keys:read",
            OkHiding("{KEY}"),
            OkHiding("{KEY}"),
            None,
        ),
        admin(
            "GET",
            "/v1/keys/{id}",
            "/v1/keys/{KEY}",
            None,
            "keys:read",
            Absent,
            Absent,
            Some("/v1/keys/{ABSENT_KEY}"),
        ),
        admin(
            "PATCH",
            "/v1/keys/{id}",
            "/v1/keys/{KEY}",
            Some(r#"{"name": "renamed"}"#),
            "keys:write",
            Absent,
            Absent,
            Some("/v1/keys/{ABSENT_KEY}"),
        ),
        admin(
            "POST",
            "/v1/keys/{id}/revoke",
            "/v1/keys/{KEY}/revoke",
            Some("{}"),
            "keys:write",
            Absent,
            Absent,
            Some("/v1/keys/{ABSENT_KEY}/revoke"),
        ),
        admin(
            "POST",
            "/v1/keys/{id}/rotate",
            "/v1/keys/{KEY}/rotate",
            Some("{}"),
            "keys:write",
            Absent,
            Absent,
            Some("/v1/keys/{ABSENT_KEY}/rotate"),
        ),
        admin(
            "GET",
            "/v1/keys/{id}/usage",
            "/v1/keys/{KEY}/usage",
            None,
            "keys:read",
            Absent,
            Absent,
            Some("/v1/keys/{ABSENT_KEY}/usage"),
        ),
        // Revokes nothing out of reach: the fixture key is checked after.
        admin(
            "POST",
            "/v1/keys/bulk-revoke",
            "/v1/keys/bulk-revoke",
            Some(r#"{"owner": "acme", "reason": "matrix"}"#),
            "keys:write",
            Ok,
            Ok,
            None,
        ),
        admin(
            "POST",
            "/v1/keys/verify",
            "/v1/keys/verify",
            Some(r#"{"key": "{PLAIN}"}"#),
            "keys:verify",
            Verify("NOT_FOUND"),
            Verify("NOT_FOUND"),
            None,
        ),
        admin(
            "POST",
            "/v1/leaks",
            "/v1/leaks",
            Some(r#"{"leaks": [{"key": "{LEAKED}"}]}"#),
            "leaks:report",
            Ok,
            Ok,
            None,
        ),
        admin(
            "GET",
            "/v1/owners/{owner}/ratelimits",
            "/v1/owners/acme/ratelimits",
            None,
            "keys:read",
            Absent,
            Absent,
            Some("/v1/owners/nobody/ratelimits"),
        ),
        admin(
            "POST",
            "/v1/owners/{owner}/totp",
            "/v1/owners/acme/totp",
            None,
            "keys:write",
            Absent,
            Absent,
            Some("/v1/owners/nobody/totp"),
        ),
        // A code that was never shown: what the full token hears is the
        // operation's own refusal.
        admin(
            "POST",
            "/v1/owners/{owner}/totp/confirm",
            "/v1/owners/acme/totp/confirm",
            Some(r#"{"otp": "000000"}"#),
            "keys:write",
            Absent,
            Absent,
            Some("/v1/owners/nobody/totp/confirm"),
        )
        .public_answer(Authorized),
        admin(
            "DELETE",
            "/v1/owners/{owner}/totp",
            "/v1/owners/acme/totp",
            None,
            "keys:write",
            Absent,
            Absent,
            Some("/v1/owners/nobody/totp"),
        )
        .public_answer(Authorized)
        .answering_sessions(Refused(403, "STEP_UP_REQUIRED")),
        admin(
            "PUT",
            "/v1/owners/{owner}/ratelimits",
            "/v1/owners/acme/ratelimits",
            Some(r#"{"ratelimits": []}"#),
            "keys:write",
            FORBIDDEN,
            FORBIDDEN,
            None,
        ),
        // Tokens and audit.
        // A limited token cannot mint one without its limits.
        admin(
            "POST",
            "/v1/tokens",
            "/v1/tokens",
            Some(r#"{"name": "minted", "scopes": ["keys:read"]}"#),
            "tokens:write",
            FORBIDDEN,
            FORBIDDEN,
            None,
        )
        // A session's token takes the workspaces and environments of the
        // grants holding its scopes.
        .for_sessions_in_other_workspace(Ok)
        .for_sessions_in_other_environment(Ok),
        admin(
            "GET",
            "/v1/tokens",
            "/v1/tokens",
            None,
            "tokens:read",
            OkHiding("{ROOT_ID}"),
            OkHiding("{ROOT_ID}"),
            None,
        ),
        admin(
            "POST",
            "/v1/tokens/{id}/revoke",
            "/v1/tokens/{TOKEN}/revoke",
            Some("{}"),
            "tokens:write",
            Absent,
            Absent,
            Some("/v1/tokens/{ABSENT_TOKEN}/revoke"),
        ),
        admin(
            "GET",
            "/v1/audit",
            "/v1/audit",
            None,
            "audit:read",
            OkHiding("{KEY}"),
            OkHiding("{KEY}"),
            None,
        ),
        // The chain covers every event: only a token that reaches them all.
        admin(
            "GET",
            "/v1/audit/status",
            "/v1/audit/status",
            None,
            "audit:read",
            FORBIDDEN,
            FORBIDDEN,
            None,
        ),
        admin(
            "POST",
            "/v1/audit/verify",
            "/v1/audit/verify",
            None,
            "audit:read",
            FORBIDDEN,
            FORBIDDEN,
            None,
        ),
        admin(
            "GET",
            "/v1/audit/events",
            "/v1/audit/events",
            None,
            "audit:read",
            FORBIDDEN,
            FORBIDDEN,
            None,
        ),
        // APIs.
        admin(
            "POST",
            "/v1/apis",
            "/v1/apis",
            Some(r#"{"name": "made {ROW}", "prefix": "made{ROW}", "environments": ["live"]}"#),
            "apis:write",
            FORBIDDEN,
            FORBIDDEN,
            None,
        ),
        admin(
            "GET",
            "/v1/apis",
            "/v1/apis",
            None,
            "apis:read",
            OkHiding("{API}"),
            OkHiding("{API}"),
            None,
        ),
        admin(
            "GET",
            "/v1/apis/{id}",
            "/v1/apis/{API}",
            None,
            "apis:read",
            Absent,
            Absent,
            Some("/v1/apis/{ABSENT_API}"),
        ),
        // People and access. Users belong to no API: a token limited to
        // APIs sees none; changing one needs no environment limit.
        public(
            "POST",
            "/v1/auth/login",
            Some(r#"{"email": "nobody@example.com", "password": "not-the-password-1"}"#),
        )
        .public_answer(UNAUTHENTICATED),
        admin(
            "GET",
            "/v1/auth/whoami",
            "/v1/auth/whoami",
            None,
            ANY,
            Ok,
            Ok,
            None,
        )
        .answering_sessions(Ok),
        // A service token has no session, second factor or step-up.
        admin(
            "POST",
            "/v1/auth/logout",
            "/v1/auth/logout",
            None,
            ANY,
            INVALID,
            INVALID,
            None,
        )
        .answering_sessions(Ok),
        admin(
            "POST",
            "/v1/auth/totp",
            "/v1/auth/totp",
            None,
            ANY,
            INVALID,
            INVALID,
            None,
        )
        .answering_sessions(Ok),
        admin(
            "POST",
            "/v1/auth/totp/confirm",
            "/v1/auth/totp/confirm",
            Some(r#"{"otp": "0000000"}"#),
            ANY,
            INVALID,
            INVALID,
            None,
        )
        .answering_sessions(INVALID),
        admin(
            "POST",
            "/v1/auth/step-up",
            "/v1/auth/step-up",
            Some(r#"{"otp": "0000000"}"#),
            ANY,
            INVALID,
            INVALID,
            None,
        )
        .answering_sessions(INVALID),
        admin(
            "POST",
            "/v1/users",
            "/v1/users",
            Some(r#"{"email": "made{UNIQUE}@example.com", "password": "plum-violet-harbor-42"}"#),
            "users:write",
            FORBIDDEN,
            FORBIDDEN,
            None,
        )
        .in_other_workspace(Ok),
        admin(
            "GET",
            "/v1/users",
            "/v1/users",
            None,
            "users:read",
            OkHiding("{USER}"),
            Ok,
            None,
        ),
        admin(
            "GET",
            "/v1/users/{id}",
            "/v1/users/{USER}",
            None,
            "users:read",
            Absent,
            Ok,
            Some("/v1/users/{ABSENT_USER}"),
        ),
        admin(
            "PATCH",
            "/v1/users/{id}",
            "/v1/users/{USER}",
            Some(r#"{"roles": [{"role": "read-only"}]}"#),
            "users:write",
            Absent,
            Absent,
            Some("/v1/users/{ABSENT_USER}"),
        ),
        admin(
            "GET",
            "/v1/users/{id}/sessions",
            "/v1/users/{USER}/sessions",
            None,
            "users:read",
            Absent,
            Ok,
            Some("/v1/users/{ABSENT_USER}/sessions"),
        ),
        admin(
            "POST",
            "/v1/workspaces",
            "/v1/workspaces",
            Some(r#"{"name": "made{ROW}"}"#),
            "apis:write",
            FORBIDDEN,
            FORBIDDEN,
            None,
        ),
        admin(
            "GET",
            "/v1/workspaces",
            "/v1/workspaces",
            None,
            "apis:read",
            Ok,
            Ok,
            None,
        ),
        admin(
            "GET",
            "/v1/roles",
            "/v1/roles",
            None,
            "users:read",
            Ok,
            Ok,
            None,
        ),
        admin(
            "PUT",
            "/v1/roles/{name}",
            "/v1/roles/made{ROW}",
            Some(r#"{"scopes": ["keys:read"]}"#),
            "users:write",
            FORBIDDEN,
            FORBIDDEN,
            None,
        ),
        admin(
            "DELETE",
            "/v1/roles/{name}",
            "/v1/roles/{ROLE}",
            None,
            "users:write",
            FORBIDDEN,
            FORBIDDEN,
            None,
        ),
        admin(
            "GET",
            "/v1/access-review",
            "/v1/access-review",
            None,
            "users:read",
            FORBIDDEN,
            FORBIDDEN,
            None,
        ),
        admin(
            "PATCH",
            "/v1/apis/{id}",
            "/v1/apis/{API}",
            Some(r#"{"critical_scopes": ["withdrawals:write"]}"#),
            "apis:write",
            Absent,
            Absent,
            Some("/v1/apis/{ABSENT_API}"),
        ),
        // The node: what spans every API and environment needs a token
        // without limits.
        admin(
            "POST",
            "/v1/sys/init",
            "/v1/sys/init",
            Some(r#"{"secret_shares": 3, "secret_threshold": 2}"#),
            "sys:write",
            FORBIDDEN,
            FORBIDDEN,
            None,
        ),
        admin(
            "POST",
            "/v1/sys/seal",
            "/v1/sys/seal",
            None,
            "sys:write",
            FORBIDDEN,
            FORBIDDEN,
            None,
        ),
        admin(
            "POST",
            "/v1/sys/rotate",
            "/v1/sys/rotate",
            None,
            "sys:write",
            FORBIDDEN,
            FORBIDDEN,
            None,
        ),
        admin(
            "POST",
            "/v1/sys/rewrap",
            "/v1/sys/rewrap",
            None,
            "sys:write",
            FORBIDDEN,
            FORBIDDEN,
            None,
        ),
        admin(
            "POST",
            "/v1/sys/rekey",
            "/v1/sys/rekey",
            Some(r#"{"keys": [], "secret_shares": 3, "secret_threshold": 2}"#),
            "sys:write",
            FORBIDDEN,
            FORBIDDEN,
            None,
        ),
        admin(
            "GET",
            "/v1/sys/mounts",
            "/v1/sys/mounts",
            None,
            "secrets:read",
            Ok,
            OkHiding("{MOUNT}/"),
            None,
        ),
        admin(
            "POST",
            "/v1/sys/mounts/{path}",
            "/v1/sys/mounts/made-{ROW}",
            Some(r#"{"type": "kv", "options": {"version": "2", "environment": "live"}}"#),
            "sys:write",
            Ok,
            FORBIDDEN,
            None,
        )
        // Mounts bind no API or workspace: the mount the row made as
        // another API's token is there already.
        .in_other_workspace(Refused(409, "CONFLICT")),
        // KV v2 on a live mount: a token limited to another API reaches it
        // (mounts bind no API), one limited to test finds nothing.
        kv(
            "GET",
            "/v1/{mount}/data/{path}",
            "/v1/{MOUNT}/data/row{ROW}",
            None,
            "secrets:read",
            "/v1/no-mount/data/row{ROW}",
        ),
        kv(
            "POST",
            "/v1/{mount}/data/{path}",
            "/v1/{MOUNT}/data/row{ROW}",
            Some(r#"{"data": {"v": "2"}}"#),
            "secrets:write",
            "/v1/no-mount/data/row{ROW}",
        ),
        kv(
            "PUT",
            "/v1/{mount}/data/{path}",
            "/v1/{MOUNT}/data/row{ROW}",
            Some(r#"{"data": {"v": "2"}}"#),
            "secrets:write",
            "/v1/no-mount/data/row{ROW}",
        ),
        kv(
            "PATCH",
            "/v1/{mount}/data/{path}",
            "/v1/{MOUNT}/data/row{ROW}",
            Some(r#"{"data": {"w": "3"}}"#),
            "secrets:write",
            "/v1/no-mount/data/row{ROW}",
        ),
        kv(
            "DELETE",
            "/v1/{mount}/data/{path}",
            "/v1/{MOUNT}/data/row{ROW}",
            None,
            "secrets:write",
            "/v1/no-mount/data/row{ROW}",
        ),
        kv(
            "POST",
            "/v1/{mount}/delete/{path}",
            "/v1/{MOUNT}/delete/row{ROW}",
            Some(r#"{"versions": [1]}"#),
            "secrets:write",
            "/v1/no-mount/delete/row{ROW}",
        ),
        kv(
            "POST",
            "/v1/{mount}/undelete/{path}",
            "/v1/{MOUNT}/undelete/row{ROW}",
            Some(r#"{"versions": [1]}"#),
            "secrets:write",
            "/v1/no-mount/undelete/row{ROW}",
        ),
        kv(
            "POST",
            "/v1/{mount}/destroy/{path}",
            "/v1/{MOUNT}/destroy/row{ROW}",
            Some(r#"{"versions": [1]}"#),
            "secrets:write",
            "/v1/no-mount/destroy/row{ROW}",
        ),
        kv(
            "GET",
            "/v1/{mount}/metadata/{path}",
            "/v1/{MOUNT}/metadata/row{ROW}",
            None,
            "secrets:read",
            "/v1/no-mount/metadata/row{ROW}",
        ),
        // Listing the mount's root, with `?list=true`.
        kv(
            "GET",
            "/v1/{mount}/metadata",
            "/v1/{MOUNT}/metadata/?list=true",
            None,
            "secrets:read",
            "/v1/no-mount/metadata/?list=true",
        ),
        kv(
            "POST",
            "/v1/{mount}/metadata/{path}",
            "/v1/{MOUNT}/metadata/row{ROW}",
            Some(r#"{"max_versions": 5}"#),
            "secrets:write",
            "/v1/no-mount/metadata/row{ROW}",
        ),
        kv(
            "DELETE",
            "/v1/{mount}/metadata/{path}",
            "/v1/{MOUNT}/metadata/row{ROW}",
            None,
            "secrets:write",
            "/v1/no-mount/metadata/row{ROW}",
        ),
        kv(
            "GET",
            "/v1/{mount}/config",
            "/v1/{MOUNT}/config",
            None,
            "secrets:read",
            "/v1/no-mount/config",
        ),
        kv(
            "POST",
            "/v1/{mount}/config",
            "/v1/{MOUNT}/config",
            Some(r#"{"max_versions": 7}"#),
            "sys:write",
            "/v1/no-mount/config",
        ),
        // Transit on a live key of `{API}`: out of reach of both.
        admin(
            "GET",
            "/v1/transit/keys",
            "/v1/transit/keys?list=true",
            None,
            "transit:use",
            NOT_FOUND,
            NOT_FOUND,
            None,
        ),
        admin(
            "POST",
            "/v1/transit/keys/{name}",
            "/v1/transit/keys/made-{ROW}",
            Some(r#"{"environment": "live", "api_ids": ["{API}"]}"#),
            "transit:write",
            INVALID,
            FORBIDDEN,
            None,
        ),
        transit(
            "GET",
            "/v1/transit/keys/{name}",
            "/v1/transit/keys/{TK}",
            None,
            "transit:use",
            "/v1/transit/keys/no-such-key",
        ),
        transit(
            "DELETE",
            "/v1/transit/keys/{name}",
            "/v1/transit/keys/{TK}",
            None,
            "transit:write",
            "/v1/transit/keys/no-such-key",
        ),
        transit(
            "POST",
            "/v1/transit/keys/{name}/rotate",
            "/v1/transit/keys/{TK}/rotate",
            Some("{}"),
            "transit:write",
            "/v1/transit/keys/no-such-key/rotate",
        ),
        transit(
            "POST",
            "/v1/transit/keys/{name}/config",
            "/v1/transit/keys/{TK}/config",
            Some(r#"{"deletion_allowed": true}"#),
            "transit:write",
            "/v1/transit/keys/no-such-key/config",
        ),
        transit(
            "POST",
            "/v1/transit/encrypt/{name}",
            "/v1/transit/encrypt/{TK}",
            Some(r#"{"plaintext": "aGk="}"#),
            "transit:use",
            "/v1/transit/encrypt/no-such-key",
        ),
        transit(
            "POST",
            "/v1/transit/decrypt/{name}",
            "/v1/transit/decrypt/{TK}",
            Some(r#"{"ciphertext": "{CT}"}"#),
            "transit:use",
            "/v1/transit/decrypt/no-such-key",
        ),
        transit(
            "POST",
            "/v1/transit/rewrap/{name}",
            "/v1/transit/rewrap/{TK}",
            Some(r#"{"ciphertext": "{CT}"}"#),
            "transit:use",
            "/v1/transit/rewrap/no-such-key",
        ),
        transit(
            "POST",
            "/v1/transit/datakey/{kind}/{name}",
            "/v1/transit/datakey/plaintext/{TK}",
            Some("{}"),
            "transit:use",
            "/v1/transit/datakey/plaintext/no-such-key",
        ),
        transit(
            "POST",
            "/v1/transit/sign/{name}",
            "/v1/transit/sign/{TK}",
            Some(r#"{"input": "aGk="}"#),
            "transit:use",
            "/v1/transit/sign/no-such-key",
        ),
        transit(
            "POST",
            "/v1/transit/sign/{name}/{hash_algorithm}",
            "/v1/transit/sign/{TK}/sha2-256",
            Some(r#"{"input": "aGk="}"#),
            "transit:use",
            "/v1/transit/sign/no-such-key/sha2-256",
        ),
        transit(
            "POST",
            "/v1/transit/verify/{name}",
            "/v1/transit/verify/{TK}",
            Some(r#"{"input": "aGk=", "hmac": "kw:v1:AAAA"}"#),
            "transit:use",
            "/v1/transit/verify/no-such-key",
        ),
        transit(
            "POST",
            "/v1/transit/verify/{name}/{hash_algorithm}",
            "/v1/transit/verify/{TK}/sha2-256",
            Some(r#"{"input": "aGk=", "hmac": "kw:v1:AAAA"}"#),
            "transit:use",
            "/v1/transit/verify/no-such-key/sha2-256",
        ),
        transit(
            "POST",
            "/v1/transit/hmac/{name}",
            "/v1/transit/hmac/{TK}",
            Some(r#"{"input": "aGk="}"#),
            "transit:use",
            "/v1/transit/hmac/no-such-key",
        ),
        transit(
            "POST",
            "/v1/transit/hmac/{name}/{algorithm}",
            "/v1/transit/hmac/{TK}/sha2-512",
            Some(r#"{"input": "aGk="}"#),
            "transit:use",
            "/v1/transit/hmac/no-such-key/sha2-512",
        ),
        admin(
            "POST",
            "/v1/transit/random",
            "/v1/transit/random",
            Some("{}"),
            "transit:use",
            Ok,
            Ok,
            None,
        ),
        admin(
            "POST",
            "/v1/transit/random/{bytes}",
            "/v1/transit/random/16",
            Some("{}"),
            "transit:use",
            Ok,
            Ok,
            None,
        ),
    ]
}

/// Routes served from the router's fallback, which the OpenAPI document may
/// leave out: every row not in the document must be one of these.
fn is_engine_route(template: &str) -> bool {
    template.starts_with("/v1/{mount}/") || template.starts_with("/v1/transit/")
}

/// The (method, path) of every operation in the OpenAPI document.
fn documented_routes() -> BTreeSet<(String, String)> {
    let doc = serde_json::to_value(keyward_server::openapi()).unwrap();
    let mut routes = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in [
            "get", "put", "post", "delete", "options", "head", "patch", "trace",
        ] {
            if item.get(method).is_some() {
                routes.insert((method.to_ascii_uppercase(), path.clone()));
            }
        }
    }
    routes
}

/// The records and tokens the matrix works on.
struct Fixture {
    values: BTreeMap<&'static str, String>,
    tokens: BTreeMap<State, String>,
    /// For `LacksScope`: a token with every scope but this one.
    lacking: BTreeMap<&'static str, String>,
}

impl Fixture {
    fn fill(&self, text: &str, row: usize) -> String {
        let mut out = text.replace("{ROW}", &row.to_string());
        for (name, value) in &self.values {
            out = out.replace(name, value);
        }
        out
    }

    fn token(&self, state: State, row: &Row) -> Option<String> {
        match state {
            State::NoToken => None,
            State::LacksScope => Some(
                self.lacking
                    .get(row.scope.filter(|s| *s != ANY).unwrap_or("keys:read"))
                    .expect("a lacking token for every scope")
                    .clone(),
            ),
            other => Some(self.tokens[&other].clone()),
        }
    }
}

fn all_scopes() -> Value {
    json!(ALL_SCOPES)
}

/// Creates a token as root; returns its plaintext and id.
async fn minted(app: &TestApp, body: Value) -> (String, String) {
    let t = app.ok(Method::POST, "/v1/tokens", Some(body)).await;
    (
        t["token"].as_str().unwrap().to_owned(),
        t["id"].as_str().unwrap().to_owned(),
    )
}

/// The root token's id: the one token no other token created.
async fn root_id(app: &TestApp) -> String {
    let listed = app.ok(Method::GET, "/v1/tokens", None).await;
    listed["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["created_by"].is_null())
        .map(|t| t["id"].as_str().unwrap().to_owned())
        .expect("the root token is listed")
}

async fn revoke_token(app: &TestApp, id: &str) {
    app.ok(
        Method::POST,
        &format!("/v1/tokens/{id}/revoke"),
        Some(json!({})),
    )
    .await;
}

async fn fixture(app: &TestApp, rows: &[Row]) -> Fixture {
    let mut values = BTreeMap::new();
    let alpha = app.create_api("alpha", &["live"]).await;
    let beta = app.create_api("beta", &["live", "test"]).await;
    let key = app
        .create_key(
            json!({"api_id": alpha, "environment": "live", "owner": "acme",
                           "scopes": ["prices:read"]}),
        )
        .await;
    values.insert("{KEY}", key["id"].as_str().unwrap().to_owned());
    values.insert("{PLAIN}", key["key"].as_str().unwrap().to_owned());
    values.insert("{API}", alpha.clone());
    let now = OffsetDateTime::now_utc();
    values.insert(
        "{ABSENT_KEY}",
        KeyId::generate(now).unwrap().as_str().to_owned(),
    );
    values.insert(
        "{ABSENT_API}",
        ApiId::generate(now).unwrap().as_str().to_owned(),
    );
    values.insert(
        "{ABSENT_TOKEN}",
        TokenId::generate(now).unwrap().as_str().to_owned(),
    );
    let leaked = PlaintextKey::generate(&Prefix::admin(), Environment::Live).unwrap();
    values.insert("{LEAKED}", leaked.expose().to_owned());

    let (_, target) = minted(app, json!({"name": "target", "scopes": ["keys:read"]})).await;
    values.insert("{TOKEN}", target);
    values.insert("{ROOT_ID}", root_id(app).await);

    app.ok(
        Method::POST,
        "/v1/workspaces",
        Some(json!({"name": "elsewhere"})),
    )
    .await;
    let user = app
        .ok(
            Method::POST,
            "/v1/users",
            Some(
                json!({"email": "target@example.com", "password": "plum-violet-harbor-42",
                        "roles": [{"role": "operator", "workspace": "default"}]}),
            ),
        )
        .await;
    values.insert("{USER}", user["id"].as_str().unwrap().to_owned());
    values.insert(
        "{ABSENT_USER}",
        UserId::generate(now).unwrap().as_str().to_owned(),
    );
    app.ok(
        Method::PUT,
        "/v1/roles/unheld",
        Some(json!({"scopes": ["keys:read"]})),
    )
    .await;
    values.insert("{ROLE}", "unheld".to_owned());

    values.insert("{MOUNT}", "vault".to_owned());
    app.ok(
        Method::POST,
        "/v1/sys/mounts/vault",
        Some(json!({"type": "kv", "options": {"version": "2", "environment": "live"}})),
    )
    .await;
    for (i, row) in rows.iter().enumerate() {
        if row.template.starts_with("/v1/{mount}/") && row.path.contains("{ROW}") {
            app.ok(
                Method::POST,
                &format!("/v1/vault/data/row{i}"),
                Some(json!({"data": {"v": "1"}})),
            )
            .await;
        }
    }
    values.insert("{TK}", "tk".to_owned());
    app.ok(
        Method::POST,
        "/v1/transit/keys/tk",
        Some(json!({"environment": "live", "api_ids": [alpha]})),
    )
    .await;
    let sealed = app
        .ok(
            Method::POST,
            "/v1/transit/encrypt/tk",
            Some(json!({"plaintext": "aGk="})),
        )
        .await;
    values.insert(
        "{CT}",
        sealed["data"]["ciphertext"].as_str().unwrap().to_owned(),
    );

    let mut tokens = BTreeMap::new();
    tokens.insert(State::Garbage, "kwa_live_not-a-real-token".to_owned());
    let (revoked, id) = minted(app, json!({"name": "revoked", "scopes": all_scopes()})).await;
    revoke_token(app, &id).await;
    tokens.insert(State::Revoked, revoked);
    let expires = (OffsetDateTime::now_utc() + time::Duration::seconds(2))
        .format(&Rfc3339)
        .unwrap();
    let expired = app
        .token(json!({"name": "expired", "scopes": all_scopes(), "expires_at": expires}))
        .await;
    tokens.insert(State::Expired, expired);
    tokens.insert(
        State::OtherApi,
        app.token(json!({"name": "other-api", "scopes": all_scopes(), "api_ids": [beta]}))
            .await,
    );
    tokens.insert(
        State::OtherEnvironment,
        app.token(json!({"name": "other-env", "scopes": all_scopes(), "environments": ["test"]}))
            .await,
    );
    tokens.insert(
        State::OtherWorkspace,
        app.token(
            json!({"name": "other-workspace", "scopes": all_scopes(), "workspaces": ["elsewhere"]}),
        )
        .await,
    );
    let (parent, parent_id) = minted(app, json!({"name": "parent", "scopes": all_scopes()})).await;
    let (code, child) = app
        .call(
            Method::POST,
            "/v1/tokens",
            Some(&parent),
            Some(json!({"name": "child", "scopes": all_scopes()})),
        )
        .await;
    assert_eq!(code, StatusCode::CREATED, "{child}");
    revoke_token(app, &parent_id).await;
    tokens.insert(
        State::ChildOfRevoked,
        child["token"].as_str().unwrap().to_owned(),
    );

    let mut lacking = BTreeMap::new();
    for scope in ALL_SCOPES {
        let rest: Vec<&str> = ALL_SCOPES.iter().copied().filter(|s| *s != scope).collect();
        lacking.insert(
            scope,
            app.token(json!({"name": format!("without {scope}"), "scopes": rest}))
                .await,
        );
    }
    // Let the expiring token expire.
    tokio::time::sleep(std::time::Duration::from_millis(2200)).await;
    Fixture {
        values,
        tokens,
        lacking,
    }
}

async fn send(
    app: &TestApp,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> (StatusCode, Value) {
    let method = Method::from_bytes(method.as_bytes()).unwrap();
    let mut request = app.client.request(method, format!("{}{}", app.base, path));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .body(body.to_owned());
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// How many cells asserted each kind of answer.
#[derive(Default, Debug)]
struct Counts {
    cells: usize,
    unauthenticated: usize,
    forbidden: usize,
    absent: usize,
    other_refusals: usize,
    allowed: usize,
}

async fn authorization_matrix_covers_every_route_and_token_state(app: TestApp) {
    let rows = rows();
    // Every documented route has a row, and every row is a documented
    // route or an engine route.
    let documented = documented_routes();
    let covered: BTreeSet<(String, String)> = rows
        .iter()
        .map(|r| (r.method.to_owned(), r.template.to_owned()))
        .collect();
    let missing: Vec<_> = documented.difference(&covered).collect();
    assert!(
        missing.is_empty(),
        "documented routes without a row in the authorization table: {missing:?}"
    );
    let stray: Vec<_> = covered
        .difference(&documented)
        .filter(|(_, template)| !is_engine_route(template))
        .collect();
    assert!(
        stray.is_empty(),
        "rows for routes that do not exist: {stray:?}"
    );

    let fixture = fixture(&app, &rows).await;
    let mut counts = Counts::default();
    let mut failures = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        let path = fixture.fill(row.path, i);
        let body = row.body.map(|b| fixture.fill(b, i));
        for state in STATES {
            let body = body
                .as_deref()
                .map(|b| b.replace("{UNIQUE}", &counts.cells.to_string()));
            let token = fixture.token(state, row);
            let expect = match (row.scope, state) {
                (
                    None,
                    State::LacksScope
                    | State::OtherApi
                    | State::OtherEnvironment
                    | State::OtherWorkspace,
                ) if row.vault_self => Expect::Ok,
                (None, _) if row.vault_self => Expect::VaultRefused(403),
                (None, _) => row.public,
                (Some(_), State::NoToken | State::Garbage | State::Revoked | State::Expired) => {
                    UNAUTHENTICATED
                }
                (Some(_), State::ChildOfRevoked) => UNAUTHENTICATED,
                (Some(ANY), State::LacksScope) => row.other_api,
                (Some(_), State::LacksScope) => FORBIDDEN,
                (Some(_), State::OtherApi) => row.other_api,
                (Some(_), State::OtherEnvironment) => row.other_environment,
                (Some(_), State::OtherWorkspace) => row.other_workspace,
            };
            let cell = format!("{} {path} as {state:?}", row.method);
            let failure = check_cell(
                &app,
                &fixture,
                row,
                i,
                Cell {
                    name: &cell,
                    path: &path,
                    body: body.as_deref(),
                    token: token.as_deref(),
                },
                expect,
                &mut counts,
            )
            .await;
            failures.extend(failure);
        }
    }
    eprintln!(
        "authorization matrix: {} routes x {} token states = {} cells; asserted {} \
         (401: {}, 403: {}, 404/absent: {}, other refusals: {}, allowed within reach: {})",
        rows.len(),
        STATES.len(),
        counts.cells,
        counts.cells,
        counts.unauthenticated,
        counts.forbidden,
        counts.absent,
        counts.other_refusals,
        counts.allowed,
    );
    assert!(
        failures.is_empty(),
        "{} of {} cells failed:\n{}",
        failures.len(),
        counts.cells,
        failures.join("\n")
    );
    // Nothing out of reach was changed along the way.
    let code = app
        .verify_code(json!({"key": fixture.values["{PLAIN}"]}))
        .await;
    assert_eq!(code, "VALID", "the fixture key survived the matrix");
    let key = app.ok(Method::GET, "/v1/transit/keys/tk", None).await;
    assert_eq!(key["data"]["latest_version"], 1);
    let status = app
        .call(Method::GET, "/v1/sys/seal-status", None, None)
        .await
        .1;
    assert_eq!(status["sealed"], false);
}

/// One request of a matrix.
struct Cell<'a> {
    name: &'a str,
    path: &'a str,
    body: Option<&'a str>,
    token: Option<&'a str>,
}

/// Sends a cell's request and says how its answer differs from `expect`.
async fn check_cell(
    app: &TestApp,
    fixture: &Fixture,
    row: &Row,
    i: usize,
    cell: Cell<'_>,
    expect: Expect,
    counts: &mut Counts,
) -> Option<String> {
    counts.cells += 1;
    let got = send(app, row.method, cell.path, cell.token, cell.body).await;
    let name = cell.name;
    match expect {
        Expect::Ok | Expect::OkHiding(_) => {
            counts.allowed += 1;
            let hidden = match expect {
                Expect::OkHiding(what) => Some(fixture.fill(what, i)),
                _ => None,
            };
            if !got.0.is_success() {
                Some(format!("{name}: expected 2xx, got {} {}", got.0, got.1))
            } else if hidden
                .as_ref()
                .is_some_and(|h| got.1.to_string().contains(h))
            {
                Some(format!("{name}: the answer shows a record out of reach"))
            } else {
                None
            }
        }
        Expect::Verify(code) => {
            counts.allowed += 1;
            (got.0 != StatusCode::OK || got.1["code"] != code)
                .then(|| format!("{name}: expected verify {code}, got {} {}", got.0, got.1))
        }
        Expect::Refused(status, code) => {
            match status {
                401 => counts.unauthenticated += 1,
                403 => counts.forbidden += 1,
                404 => counts.absent += 1,
                _ => counts.other_refusals += 1,
            }
            (got.0.as_u16() != status || got.1["error"]["code"] != code)
                .then(|| format!("{name}: expected {status} {code}, got {} {}", got.0, got.1))
        }
        Expect::VaultRefused(status) => {
            counts.other_refusals += 1;
            (got.0.as_u16() != status || !got.1["errors"].is_array())
                .then(|| format!("{name}: expected Vault's {status}, got {} {}", got.0, got.1))
        }
        Expect::Absent => {
            counts.absent += 1;
            let absent_path = fixture.fill(row.absent.expect("an absent path"), i);
            let absent = send(app, row.method, &absent_path, cell.token, cell.body).await;
            if got.0 != StatusCode::NOT_FOUND || got.1["error"]["code"] != "NOT_FOUND" {
                Some(format!(
                    "{name}: expected 404 NOT_FOUND, got {} {}",
                    got.0, got.1
                ))
            } else if got != absent {
                Some(format!(
                    "{name}: answers {} where an absent record answers {}",
                    got.1, absent.1
                ))
            } else {
                None
            }
        }
        Expect::Authorized => {
            counts.allowed += 1;
            [401, 403, 500].contains(&got.0.as_u16()).then(|| {
                format!(
                    "{name}: expected past the access checks, got {} {}",
                    got.0, got.1
                )
            })
        }
    }
}

/// A session state of the role matrix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum SessionState {
    /// A user granted the role in every workspace, stepped up.
    Valid,
    /// That user's session after signing out.
    Revoked,
    /// A user granted the role in another workspace only.
    OtherWorkspace,
    /// A user granted the role in the `test` environment only.
    OtherEnvironment,
}

const SESSION_STATES: [SessionState; 4] = [
    SessionState::Valid,
    SessionState::Revoked,
    SessionState::OtherWorkspace,
    SessionState::OtherEnvironment,
];

/// What a session of a user with `role` in `state` must hear on `row`,
/// from the role's documented scopes (`BuiltinRole::scopes`) and the row's
/// answers for tokens out of reach.
fn role_expect(row: &Row, role: BuiltinRole, state: SessionState) -> Expect {
    if row.vault_self {
        return match state {
            SessionState::Revoked => Expect::VaultRefused(403),
            _ => Expect::Ok,
        };
    }
    let Some(scope) = row.scope else {
        return row.public;
    };
    if state == SessionState::Revoked {
        return UNAUTHENTICATED;
    }
    if scope == ANY {
        return row.as_session;
    }
    // A developer never reaches `live`, where the fixtures are.
    let environment_limited =
        role.environments().is_some() || state == SessionState::OtherEnvironment;
    // A KV route finds its mount before it asks for a scope: a mount in an
    // environment the session does not reach is absent, whatever the role.
    if environment_limited && row.template.starts_with("/v1/{mount}/") {
        return row.other_environment;
    }
    if !role.scopes().iter().any(|s| s.as_str() == scope) {
        return FORBIDDEN;
    }
    let in_reach = match state {
        SessionState::OtherWorkspace => row.session_workspace.unwrap_or(row.other_workspace),
        _ => Expect::Authorized,
    };
    let limited = row.session_environment.unwrap_or(row.other_environment);
    match (environment_limited, state, limited) {
        (false, _, _) => in_reach,
        (true, SessionState::OtherWorkspace, Expect::Ok | Expect::OkHiding(_)) => in_reach,
        (true, _, limited) => limited,
    }
}

/// Sessions of users holding `role`, one per session state, each stepped up
/// with a TOTP code at sign-in.
async fn role_sessions(app: &TestApp, role: BuiltinRole) -> BTreeMap<SessionState, String> {
    let mut sessions = BTreeMap::new();
    for state in [
        SessionState::Valid,
        SessionState::OtherWorkspace,
        SessionState::OtherEnvironment,
    ] {
        let grant = match state {
            SessionState::OtherWorkspace => {
                json!({"role": role.as_str(), "workspace": "elsewhere"})
            }
            SessionState::OtherEnvironment => {
                json!({"role": role.as_str(), "environments": ["test"]})
            }
            _ => json!({"role": role.as_str()}),
        };
        let email = format!("{}-{state:?}@example.com", role.as_str()).to_lowercase();
        app.ok(
            Method::POST,
            "/v1/users",
            Some(json!({"email": email, "password": PASSWORD, "roles": [grant]})),
        )
        .await;
        let first = session(app, &email, None).await;
        let (mut phone, _) = enrol(app, &first).await;
        let code = phone.code().await;
        sessions.insert(state, session(app, &email, Some(&code)).await);
        if state == SessionState::Valid {
            let code = phone.code().await;
            let ended = session(app, &email, Some(&code)).await;
            let (status, _) = app
                .call(Method::POST, "/v1/auth/logout", Some(&ended), None)
                .await;
            assert_eq!(status, StatusCode::NO_CONTENT);
            sessions.insert(SessionState::Revoked, ended);
        }
    }
    sessions
}

/// Every route × every built-in role × every session state, against the
/// roles' documented scopes. The node seals, then sessions sign out, last,
/// so those cells do not decide the others.
async fn role_matrix_covers_every_route_role_and_session_state(app: TestApp) {
    let rows = rows();
    let fixture = fixture(&app, &rows).await;
    let mut sessions = BTreeMap::new();
    for role in BuiltinRole::ALL {
        sessions.insert(role.as_str(), role_sessions(&app, role).await);
    }
    let mut cells = Vec::new();
    for role in BuiltinRole::ALL {
        for state in SESSION_STATES {
            for (i, row) in rows.iter().enumerate() {
                if row.scope.is_none() && !row.vault_self {
                    // Public routes answer the same whoever calls.
                    continue;
                }
                let last = match (row.method, row.template) {
                    ("POST", "/v1/sys/seal") => 1,
                    ("POST", "/v1/auth/logout") => 2,
                    _ => 0,
                };
                cells.push((last, role, state, i));
            }
        }
    }
    cells.sort_by_key(|(last, ..)| *last);
    let mut counts = Counts::default();
    let mut failures = Vec::new();
    for (_, role, state, i) in cells {
        let row = &rows[i];
        let path = fixture.fill(row.path, i);
        let body = row.body.map(|b| {
            fixture
                .fill(b, i)
                .replace("{UNIQUE}", &format!("r{}", counts.cells))
        });
        let expect = role_expect(row, role, state);
        let name = format!("{} {path} as {} {state:?}", row.method, role.as_str());
        let token = &sessions[role.as_str()][&state];
        failures.extend(
            check_cell(
                &app,
                &fixture,
                row,
                i,
                Cell {
                    name: &name,
                    path: &path,
                    body: body.as_deref(),
                    token: Some(token),
                },
                expect,
                &mut counts,
            )
            .await,
        );
    }
    let routes = rows
        .iter()
        .filter(|r| r.scope.is_some() || r.vault_self)
        .count();
    eprintln!(
        "role matrix: {routes} routes x {} roles x {} session states = {} cells (401: {}, 403: {}, 404/absent: {}, other refusals: {}, allowed: {})",
        BuiltinRole::ALL.len(),
        SESSION_STATES.len(),
        counts.cells,
        counts.unauthenticated,
        counts.forbidden,
        counts.absent,
        counts.other_refusals,
        counts.allowed,
    );
    assert!(
        failures.is_empty(),
        "{} of {} cells failed:\n{}",
        failures.len(),
        counts.cells,
        failures.join("\n")
    );
}

/// The role matrix's last session state: every route refuses a session
/// past its `session_ttl` (2 s here), whatever its user's role, as it
/// refuses a signed-out one.
async fn role_matrix_refuses_expired_sessions(backend: Backend) {
    let app = support::spawn_with_auth(
        backend,
        keyward_server::settings::AuthFileSettings {
            session_ttl: "2s".into(),
            ..Default::default()
        },
    )
    .await;
    let rows = rows();
    let fixture = fixture(&app, &rows).await;
    let mut sessions = BTreeMap::new();
    for role in BuiltinRole::ALL {
        let email = format!("{}-expired@example.com", role.as_str());
        app.ok(
            Method::POST,
            "/v1/users",
            Some(json!({"email": email, "password": PASSWORD, "roles": [{"role": role.as_str()}]})),
        )
        .await;
        sessions.insert(role.as_str(), session(&app, &email, None).await);
    }
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    let mut counts = Counts::default();
    let mut failures = Vec::new();
    for role in BuiltinRole::ALL {
        for (i, row) in rows.iter().enumerate() {
            let expect = match (row.scope, row.vault_self) {
                (_, true) => Expect::VaultRefused(403),
                (None, false) => continue,
                (Some(_), false) => UNAUTHENTICATED,
            };
            let path = fixture.fill(row.path, i);
            let body = row.body.map(|b| fixture.fill(b, i));
            let name = format!("{} {path} as {} Expired", row.method, role.as_str());
            failures.extend(
                check_cell(
                    &app,
                    &fixture,
                    row,
                    i,
                    Cell {
                        name: &name,
                        path: &path,
                        body: body.as_deref(),
                        token: Some(&sessions[role.as_str()]),
                    },
                    expect,
                    &mut counts,
                )
                .await,
            );
        }
    }
    eprintln!(
        "role matrix, expired sessions: {} roles, {} cells",
        BuiltinRole::ALL.len(),
        counts.cells
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The message node-wide refusals carry.
const NODE_WIDE: &str = "without API or environment limits";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_limited_sys_write_token_cannot_init_a_fresh_shamir_node() {
    let dir = tempfile::tempdir().unwrap();
    let (store, db_file) = fresh_store(Backend::Sqlite, dir.path()).await;
    let seal = SealSettings {
        kind: SealType::Shamir,
        ..SealSettings::default()
    };
    let app = spawn_sealed(store, db_file, dir, seal, None).await;
    for limits in [
        json!({"environments": ["test"]}),
        json!({"api_ids": [ApiId::generate(OffsetDateTime::now_utc()).unwrap()]}),
    ] {
        let mut body = json!({"name": "ops", "scopes": ["sys:write"]});
        body.as_object_mut()
            .unwrap()
            .extend(limits.as_object().unwrap().clone());
        let (code, created) = app
            .call(Method::POST, "/v1/tokens", Some(&app.root), Some(body))
            .await;
        assert_eq!(code, StatusCode::CREATED, "{created}");
        let limited = created["token"].as_str().unwrap();
        let (code, refused) = app
            .call(
                Method::POST,
                "/v1/sys/init",
                Some(limited),
                Some(json!({"secret_shares": 3, "secret_threshold": 2})),
            )
            .await;
        assert_eq!(code, StatusCode::FORBIDDEN, "{refused}");
        assert_eq!(refused["error"]["code"], "FORBIDDEN");
        assert!(
            refused["error"]["message"]
                .as_str()
                .unwrap()
                .contains(NODE_WIDE),
            "{refused}"
        );
        assert!(!refused.to_string().contains("keys"), "{refused}");
    }
    let (_, status) = app
        .call(Method::GET, "/v1/sys/seal-status", None, None)
        .await;
    assert_eq!(status["initialized"], false, "{status}");
    // A token without limits still initialises it.
    let (code, shares) = app
        .call(
            Method::POST,
            "/v1/sys/init",
            Some(&app.root),
            Some(json!({"secret_shares": 3, "secret_threshold": 2})),
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{shares}");
    assert_eq!(shares["keys"].as_array().unwrap().len(), 3);
}

async fn test_limited_sys_write_token_cannot_seal_rekey_rotate_or_rewrap(app: TestApp) {
    let ops = app
        .token(
            json!({"name": "ops", "scopes": ["sys:write", "secrets:read", "secrets:write"],
                      "environments": ["test"]}),
        )
        .await;
    for (path, body) in [
        ("/v1/sys/seal", None),
        ("/v1/sys/rotate", None),
        ("/v1/sys/rewrap", None),
        (
            "/v1/sys/rekey",
            Some(json!({"keys": [], "secret_shares": 3, "secret_threshold": 2})),
        ),
    ] {
        let (code, refused) = app.call(Method::POST, path, Some(&ops), body).await;
        assert_eq!(code, StatusCode::FORBIDDEN, "{path}: {refused}");
        assert!(
            refused["error"]["message"]
                .as_str()
                .unwrap()
                .contains(NODE_WIDE),
            "{path}: {refused}"
        );
    }
    let (_, status) = app
        .call(Method::GET, "/v1/sys/seal-status", None, None)
        .await;
    assert_eq!(status["sealed"], false, "{status}");
    let audit = app.ok(Method::GET, "/v1/audit", None).await.to_string();
    assert!(!audit.contains("keyring.rotate") && !audit.contains("seal.seal"));

    // Mounts: its own environment yes, another no, and another's mount
    // cannot be reconfigured.
    let (code, _) = app
        .call(
            Method::POST,
            "/v1/sys/mounts/sandbox",
            Some(&ops),
            Some(json!({"type": "kv", "options": {"version": "2", "environment": "test"}})),
        )
        .await;
    assert_eq!(code, StatusCode::NO_CONTENT);
    let (code, refused) = app
        .call(
            Method::POST,
            "/v1/sys/mounts/prod",
            Some(&ops),
            Some(json!({"type": "kv", "options": {"version": "2", "environment": "live"}})),
        )
        .await;
    assert_eq!(code, StatusCode::FORBIDDEN, "{refused}");
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains(NODE_WIDE),
        "{refused}"
    );
    app.ok(
        Method::POST,
        "/v1/sys/mounts/prod",
        Some(json!({"type": "kv", "options": {"version": "2", "environment": "live"}})),
    )
    .await;
    let reconfigure = |mount: &str| format!("/v1/{mount}/config");
    let (live, _) = app
        .call(
            Method::POST,
            &reconfigure("prod"),
            Some(&ops),
            Some(json!({"max_versions": 1})),
        )
        .await;
    let absent = app
        .call(
            Method::POST,
            &reconfigure("no-such-mount"),
            Some(&ops),
            Some(json!({"max_versions": 1})),
        )
        .await;
    assert_eq!(live, StatusCode::NOT_FOUND);
    assert_eq!(absent.0, StatusCode::NOT_FOUND);
    let config = app.ok(Method::GET, "/v1/prod/config", None).await;
    assert_eq!(config["data"]["max_versions"], 0, "{config}");
    let listed = app
        .call(Method::GET, "/v1/sys/mounts", Some(&ops), None)
        .await
        .1;
    assert!(listed["data"].get("sandbox/").is_some(), "{listed}");
    assert!(listed["data"].get("prod/").is_none(), "{listed}");
}

async fn kv_mount_existence_is_hidden_without_a_token(app: TestApp) {
    app.ok(
        Method::POST,
        "/v1/sys/mounts/prod",
        Some(json!({"type": "kv", "options": {"version": "2"}})),
    )
    .await;
    for token in [None, Some("garbage"), Some("kwa_live_0000")] {
        for (method, path) in [
            ("GET", "data/app/db"),
            ("POST", "data/app/db"),
            ("GET", "metadata/?list=true"),
            ("LIST", "metadata/"),
            ("GET", "config"),
        ] {
            let body = (method == "POST").then_some(r#"{"data": {"a": "b"}}"#);
            let existing = send(&app, method, &format!("/v1/prod/{path}"), token, body).await;
            let absent = send(&app, method, &format!("/v1/nothing/{path}"), token, body).await;
            assert_eq!(existing.0, StatusCode::UNAUTHORIZED, "{method} {path}");
            assert_eq!(existing, absent, "{method} {path} tells the mounts apart");
        }
    }
}

async fn owner_limits_are_read_only_by_tokens_that_reach_every_key_of_the_owner(app: TestApp) {
    let alpha = app.create_api("alpha", &["live", "test"]).await;
    let beta = app.create_api("beta", &["live", "test"]).await;
    for (api, owner) in [(&alpha, "acme"), (&alpha, "globex"), (&beta, "globex")] {
        app.create_key(json!({"api_id": api, "environment": "live", "owner": owner,
                              "scopes": ["prices:read"]}))
            .await;
    }
    let limits = json!({"ratelimits": [{"name": "burst", "limit": 10, "duration_ms": 1000}]});
    for owner in ["acme", "globex"] {
        app.ok(
            Method::PUT,
            &format!("/v1/owners/{owner}/ratelimits"),
            Some(limits.clone()),
        )
        .await;
    }
    let scopes = json!(["keys:read", "keys:write"]);
    let alpha_token = app
        .token(json!({"name": "a", "scopes": scopes, "api_ids": [alpha]}))
        .await;
    let beta_token = app
        .token(json!({"name": "b", "scopes": scopes, "api_ids": [beta]}))
        .await;
    let test_token = app
        .token(json!({"name": "t", "scopes": scopes, "environments": ["test"]}))
        .await;
    let read = |owner: &str| format!("/v1/owners/{owner}/ratelimits");
    // Whole reach: read.
    let (code, body) = app
        .call(Method::GET, &read("acme"), Some(&alpha_token), None)
        .await;
    assert_eq!(code, StatusCode::OK, "{body}");
    assert_eq!(body["ratelimits"], limits["ratelimits"]);
    // Partial or no reach answers as an owner that does not exist.
    for (token, owner) in [
        (&alpha_token, "globex"),
        (&beta_token, "acme"),
        (&beta_token, "globex"),
        (&test_token, "acme"),
    ] {
        let got = app.call(Method::GET, &read(owner), Some(token), None).await;
        let absent = app
            .call(Method::GET, &read("nobody"), Some(token), None)
            .await;
        assert_eq!(got.0, StatusCode::NOT_FOUND, "{owner}: {}", got.1);
        assert_eq!(got, absent, "{owner}");
    }
    // Setting binds every API and environment: only a token without limits.
    for owner in ["acme", "nobody"] {
        let (code, refused) = app
            .call(
                Method::PUT,
                &read(owner),
                Some(&alpha_token),
                Some(json!({"ratelimits": []})),
            )
            .await;
        assert_eq!(code, StatusCode::FORBIDDEN, "{refused}");
        assert!(refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains(NODE_WIDE));
    }
    let still = app.ok(Method::GET, &read("acme"), None).await;
    assert_eq!(still["ratelimits"], limits["ratelimits"]);
    let none = app.ok(Method::GET, &read("nobody"), None).await;
    assert_eq!(none["ratelimits"], json!([]));
}

on_both_backends!(
    authorization_matrix_covers_every_route_and_token_state,
    role_matrix_covers_every_route_role_and_session_state,
    test_limited_sys_write_token_cannot_seal_rekey_rotate_or_rewrap,
    kv_mount_existence_is_hidden_without_a_token,
    owner_limits_are_read_only_by_tokens_that_reach_every_key_of_the_owner,
);
on_both_backends_raw!(role_matrix_refuses_expired_sessions);
