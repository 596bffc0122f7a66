//! The names of what the audit log records, in one place.

/// Every action an audit event can record. Its name (`key.revoke`) is the
/// stable `action` of the event, as stored and as the API lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuditAction {
    ApiCreate,
    ApiUpdate,
    KeyCreate,
    KeyUpdate,
    KeyRotate,
    KeyRevoke,
    OwnerRatelimits,
    TokenCreate,
    TokenRevoke,
    TokenRecover,
    TokenAdopt,
    TokenLastFullRevoked,
    SealInit,
    SealUnseal,
    SealSeal,
    SealRekey,
    KeyringRotate,
    KeyringRewrap,
    MountCreate,
    MountConfig,
    SecretRead,
    SecretWrite,
    SecretMetadata,
    SecretDelete,
    SecretUndelete,
    SecretDestroy,
    SecretDestroyAll,
    TransitCreate,
    TransitRotate,
    TransitConfig,
    TransitDelete,
    UserCreate,
    UserUpdate,
    UserDisable,
    UserPassword,
    UserLogin,
    UserLoginFailed,
    UserLogout,
    UserTotpEnroll,
    UserTotpConfirm,
    UserStepUp,
    UserStepUpFailed,
    WorkspaceCreate,
    RoleCreate,
    RoleUpdate,
    RoleDelete,
    OwnerTotpEnroll,
    OwnerTotpConfirm,
    OwnerTotpRemove,
    AuditTamperDetected,
}

impl AuditAction {
    pub const ALL: [AuditAction; 50] = [
        AuditAction::ApiCreate,
        AuditAction::ApiUpdate,
        AuditAction::KeyCreate,
        AuditAction::KeyUpdate,
        AuditAction::KeyRotate,
        AuditAction::KeyRevoke,
        AuditAction::OwnerRatelimits,
        AuditAction::TokenCreate,
        AuditAction::TokenRevoke,
        AuditAction::TokenRecover,
        AuditAction::TokenAdopt,
        AuditAction::TokenLastFullRevoked,
        AuditAction::SealInit,
        AuditAction::SealUnseal,
        AuditAction::SealSeal,
        AuditAction::SealRekey,
        AuditAction::KeyringRotate,
        AuditAction::KeyringRewrap,
        AuditAction::MountCreate,
        AuditAction::MountConfig,
        AuditAction::SecretRead,
        AuditAction::SecretWrite,
        AuditAction::SecretMetadata,
        AuditAction::SecretDelete,
        AuditAction::SecretUndelete,
        AuditAction::SecretDestroy,
        AuditAction::SecretDestroyAll,
        AuditAction::TransitCreate,
        AuditAction::TransitRotate,
        AuditAction::TransitConfig,
        AuditAction::TransitDelete,
        AuditAction::UserCreate,
        AuditAction::UserUpdate,
        AuditAction::UserDisable,
        AuditAction::UserPassword,
        AuditAction::UserLogin,
        AuditAction::UserLoginFailed,
        AuditAction::UserLogout,
        AuditAction::UserTotpEnroll,
        AuditAction::UserTotpConfirm,
        AuditAction::UserStepUp,
        AuditAction::UserStepUpFailed,
        AuditAction::WorkspaceCreate,
        AuditAction::RoleCreate,
        AuditAction::RoleUpdate,
        AuditAction::RoleDelete,
        AuditAction::OwnerTotpEnroll,
        AuditAction::OwnerTotpConfirm,
        AuditAction::OwnerTotpRemove,
        AuditAction::AuditTamperDetected,
    ];

    /// The stable name, `area.verb`.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::ApiCreate => "api.create",
            AuditAction::ApiUpdate => "api.update",
            AuditAction::KeyCreate => "key.create",
            AuditAction::KeyUpdate => "key.update",
            AuditAction::KeyRotate => "key.rotate",
            AuditAction::KeyRevoke => "key.revoke",
            AuditAction::OwnerRatelimits => "owner.ratelimits",
            AuditAction::TokenCreate => "token.create",
            AuditAction::TokenRevoke => "token.revoke",
            AuditAction::TokenRecover => "token.recover",
            AuditAction::TokenAdopt => "token.adopt",
            AuditAction::TokenLastFullRevoked => "token.last_full_revoked",
            AuditAction::SealInit => "seal.init",
            AuditAction::SealUnseal => "seal.unseal",
            AuditAction::SealSeal => "seal.seal",
            AuditAction::SealRekey => "seal.rekey",
            AuditAction::KeyringRotate => "keyring.rotate",
            AuditAction::KeyringRewrap => "keyring.rewrap",
            AuditAction::MountCreate => "mount.create",
            AuditAction::MountConfig => "mount.config",
            AuditAction::SecretRead => "secret.read",
            AuditAction::SecretWrite => "secret.write",
            AuditAction::SecretMetadata => "secret.metadata",
            AuditAction::SecretDelete => "secret.delete",
            AuditAction::SecretUndelete => "secret.undelete",
            AuditAction::SecretDestroy => "secret.destroy",
            AuditAction::SecretDestroyAll => "secret.destroy_all",
            AuditAction::TransitCreate => "transit.create",
            AuditAction::TransitRotate => "transit.rotate",
            AuditAction::TransitConfig => "transit.config",
            AuditAction::TransitDelete => "transit.delete",
            AuditAction::UserCreate => "user.create",
            AuditAction::UserUpdate => "user.update",
            AuditAction::UserDisable => "user.disable",
            AuditAction::UserPassword => "user.password",
            AuditAction::UserLogin => "user.login",
            AuditAction::UserLoginFailed => "user.login_failed",
            AuditAction::UserLogout => "user.logout",
            AuditAction::UserTotpEnroll => "user.totp_enroll",
            AuditAction::UserTotpConfirm => "user.totp_confirm",
            AuditAction::UserStepUp => "user.step_up",
            AuditAction::UserStepUpFailed => "user.step_up_failed",
            AuditAction::WorkspaceCreate => "workspace.create",
            AuditAction::RoleCreate => "role.create",
            AuditAction::RoleUpdate => "role.update",
            AuditAction::RoleDelete => "role.delete",
            AuditAction::OwnerTotpEnroll => "owner.totp_enroll",
            AuditAction::OwnerTotpConfirm => "owner.totp_confirm",
            AuditAction::OwnerTotpRemove => "owner.totp_remove",
            AuditAction::AuditTamperDetected => "audit.tamper_detected",
        }
    }

    /// The action with this name, if there is one.
    pub fn parse(name: &str) -> Option<AuditAction> {
        AuditAction::ALL.into_iter().find(|a| a.as_str() == name)
    }
}

impl std::fmt::Display for AuditAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_action_has_its_own_name_and_reads_back() {
        let mut names = std::collections::HashSet::new();
        for action in AuditAction::ALL {
            let name = action.as_str();
            assert!(names.insert(name), "{name} is used twice");
            assert_eq!(AuditAction::parse(name), Some(action));
            let (area, verb) = name.split_once('.').unwrap_or_default();
            assert!(!area.is_empty() && !verb.is_empty(), "{name} is area.verb");
        }
        assert_eq!(AuditAction::parse("key.destroy"), None);
    }
}
