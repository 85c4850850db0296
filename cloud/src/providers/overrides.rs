//! [`ProviderOverride`]: a config-file table that changes some fields of a built-in
//! provider, and how it is merged onto the built-in.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Pkce, ProviderDef, RevocationMethod, TokenAuthMethod, TokenRequestFormat, UserinfoMethod};

/// A config-file partial override of a built-in provider: every field is optional and
/// replaces the built-in's value when given.
///
/// For optional fields (`revocation_url`, `userinfo_url`, `userinfo_body`,
/// `account_name_field`, `issuer`, `jwks_uri`, `token_response_pointer`, `docs_url`, `console_url`) an empty string
/// removes the built-in's value. The maps (`extra_authorize_params`, `userinfo_headers`) are
/// merged key by key; an empty value removes that key.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct ProviderOverride {
    pub display_name: Option<String>,
    pub authorization_url: Option<String>,
    pub token_url: Option<String>,
    pub revocation_url: Option<String>,
    pub revocation_method: Option<RevocationMethod>,
    pub userinfo_url: Option<String>,
    pub userinfo_method: Option<UserinfoMethod>,
    pub userinfo_body: Option<String>,
    pub userinfo_headers: Option<BTreeMap<String, String>>,
    pub account_id_field: Option<String>,
    pub account_name_field: Option<String>,
    pub issuer: Option<String>,
    pub jwks_uri: Option<String>,
    pub scopes: Option<Vec<String>>,
    pub scope_separator: Option<String>,
    pub scope_param: Option<String>,
    pub pkce: Option<Pkce>,
    pub token_auth_method: Option<TokenAuthMethod>,
    pub token_request_format: Option<TokenRequestFormat>,
    pub token_response_pointer: Option<String>,
    pub extra_authorize_params: Option<BTreeMap<String, String>>,
    pub rotates_refresh_tokens: Option<bool>,
    pub oidc: Option<bool>,
    pub docs_url: Option<String>,
    pub console_url: Option<String>,
    pub suggested_scopes: Option<Vec<String>>,
}

fn set_optional(target: &mut Option<String>, value: Option<String>) {
    if let Some(v) = value {
        *target = if v.is_empty() { None } else { Some(v) };
    }
}

fn merge_map(target: &mut BTreeMap<String, String>, value: Option<BTreeMap<String, String>>) {
    if let Some(map) = value {
        for (k, v) in map {
            if v.is_empty() {
                target.remove(&k);
            } else {
                target.insert(k, v);
            }
        }
    }
}

impl ProviderOverride {
    /// Applies this override on top of `base` (see the type docs for the merge rules).
    pub fn apply_to(self, base: &mut ProviderDef) {
        if let Some(v) = self.display_name {
            base.display_name = v;
        }
        if let Some(v) = self.authorization_url {
            base.authorization_url = v;
        }
        if let Some(v) = self.token_url {
            base.token_url = v;
        }
        set_optional(&mut base.revocation_url, self.revocation_url);
        if let Some(v) = self.revocation_method {
            base.revocation_method = v;
        }
        set_optional(&mut base.userinfo_url, self.userinfo_url);
        if let Some(v) = self.userinfo_method {
            base.userinfo_method = v;
        }
        set_optional(&mut base.userinfo_body, self.userinfo_body);
        merge_map(&mut base.userinfo_headers, self.userinfo_headers);
        if let Some(v) = self.account_id_field {
            base.account_id_field = v;
        }
        set_optional(&mut base.account_name_field, self.account_name_field);
        set_optional(&mut base.issuer, self.issuer);
        set_optional(&mut base.jwks_uri, self.jwks_uri);
        if let Some(v) = self.scopes {
            base.scopes = v;
        }
        if let Some(v) = self.scope_separator {
            base.scope_separator = v;
        }
        if let Some(v) = self.scope_param {
            base.scope_param = v;
        }
        if let Some(v) = self.pkce {
            base.pkce = v;
        }
        if let Some(v) = self.token_auth_method {
            base.token_auth_method = v;
        }
        if let Some(v) = self.token_request_format {
            base.token_request_format = v;
        }
        set_optional(&mut base.token_response_pointer, self.token_response_pointer);
        merge_map(&mut base.extra_authorize_params, self.extra_authorize_params);
        if let Some(v) = self.rotates_refresh_tokens {
            base.rotates_refresh_tokens = v;
        }
        if let Some(v) = self.oidc {
            base.oidc = v;
        }
        set_optional(&mut base.docs_url, self.docs_url);
        set_optional(&mut base.console_url, self.console_url);
        if let Some(v) = self.suggested_scopes {
            base.suggested_scopes = v;
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use crate::providers::test_support::config;
    use crate::providers::ProviderRegistry;

    #[test]
    fn override_of_builtin_with_loopback_urls_works() {
        let reg = ProviderRegistry::with_config(config(
            r#"
            [providers.google]
            authorization_url = "http://127.0.0.1:9000/authorize"
            token_url = "http://localhost:9000/token"
            userinfo_url = "http://[::1]:9000/userinfo"
            revocation_url = ""
            extra_authorize_params = { hd = "example.com", prompt = "" }
            "#,
        ))
        .unwrap();
        let g = reg.get("google").unwrap();
        assert_eq!(g.authorization_url, "http://127.0.0.1:9000/authorize");
        assert_eq!(g.token_url, "http://localhost:9000/token");
        assert_eq!(g.userinfo_url.as_deref(), Some("http://[::1]:9000/userinfo"));
        assert_eq!(g.revocation_url, None);
        // Untouched fields keep the built-in's values.
        assert_eq!(g.display_name, "Google");
        assert_eq!(g.scopes, vec!["openid", "email", "profile"]);
        assert_eq!(g.issuer.as_deref(), Some("https://accounts.google.com"));
        // Maps merge: hd added, prompt removed, access_type kept.
        assert_eq!(g.extra_authorize_params.get("hd").map(String::as_str), Some("example.com"));
        assert_eq!(g.extra_authorize_params.get("prompt"), None);
        assert_eq!(g.extra_authorize_params.get("access_type").map(String::as_str), Some("offline"));
        // Other built-ins are still there.
        assert!(reg.get("github").is_some());
    }
}
