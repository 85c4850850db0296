//! The answers every operation can give beyond its own annotations, added once from the
//! rules that produce them, so the document tells the whole truth without each handler
//! repeating it: the credential extractors (401, 403 and the security schemes each
//! operation accepts), the JSON body extractor (400, 413, 415) and the path and query
//! extractors (400). A handler's own annotation wins where it already documents a status.

use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{
    ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
};
use utoipa::openapi::{ContentBuilder, OpenApi, Ref, ResponseBuilder};

/// The security schemes, by the names operations refer to.
const BEARER_JWT: &str = "bearer_jwt";
const PAT: &str = "pat";
const SESSION_COOKIE: &str = "session_cookie";

/// Operations anyone may call, without a credential.
const PUBLIC: &[&str] = &[
    "POST /v1/auth/register",
    "POST /v1/auth/login",
    "POST /v1/auth/refresh",
    "POST /oauth/device_authorization",
    "POST /oauth/token",
    "POST /oauth/revoke",
    "GET /healthz",
    "GET /readyz",
];

/// Operations that take a PAT and nothing else.
const PAT_ONLY: &[&str] = &["POST /oauth/connection-token"];

/// Completes `spec` in place.
pub fn complete(spec: &mut OpenApi) {
    let components = spec.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        BEARER_JWT,
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .bearer_format("JWT")
                .description(Some("An access JWT from `POST /v1/auth/login` (15 minutes)."))
                .build(),
        ),
    );
    components.add_security_scheme(
        PAT,
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .bearer_format("lk_pat")
                .description(Some("A personal access token `lk_pat_…`; it acts with its scopes only."))
                .build(),
        ),
    );
    components.add_security_scheme(
        SESSION_COOKIE,
        SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
            crate::access::SESSION_COOKIE,
            "A browser's login; state-changing requests must come from the cloud's own origin.",
        ))),
    );
    for (path, item) in spec.paths.paths.iter_mut() {
        let operations = [
            ("GET", &mut item.get),
            ("PUT", &mut item.put),
            ("POST", &mut item.post),
            ("DELETE", &mut item.delete),
            ("PATCH", &mut item.patch),
        ];
        for (method, operation) in operations {
            if let Some(operation) = operation {
                complete_operation(&format!("{method} {path}"), operation);
            }
        }
    }
}

fn complete_operation(name: &str, operation: &mut Operation) {
    if PAT_ONLY.contains(&name) {
        operation.security = Some(vec![SecurityRequirement::new(PAT, Vec::<String>::new())]);
    } else if !PUBLIC.contains(&name) {
        operation.security = Some(
            [BEARER_JWT, PAT, SESSION_COOKIE]
                .into_iter()
                .map(|scheme| SecurityRequirement::new(scheme, Vec::<String>::new()))
                .collect(),
        );
    }
    if !PUBLIC.contains(&name) {
        add(operation, "401", "no credential, or a malformed, unknown, expired or revoked one (`invalid_token`)");
        add(
            operation,
            "403",
            "`insufficient_scope` (a PAT without the scope this needs), `forbidden` (a login is needed, not a \
             PAT; a cross-site cookie request; a role the caller lacks) or `not_a_member`",
        );
    }
    let json_body = operation
        .request_body
        .as_ref()
        .is_some_and(|body| body.content.keys().any(|content_type| content_type == "application/json"));
    if json_body {
        add(operation, "400", "the body is not JSON, or a field is missing, of the wrong type, unknown or invalid");
        add(operation, "413", "the body is larger than 64 KiB");
        add(operation, "415", "the body is not `Content-Type: application/json`");
    }
    if operation.parameters.as_ref().is_some_and(|p| !p.is_empty()) {
        add(operation, "400", "a path or query parameter is malformed or invalid");
    }
}

/// Documents `status` with the contract's error body, unless the operation already does.
fn add(operation: &mut Operation, status: &str, description: &str) {
    let error_body = ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build();
    operation.responses.responses.entry(status.to_owned()).or_insert_with(|| {
        ResponseBuilder::new().description(description).content("application/json", error_body).build().into()
    });
}
