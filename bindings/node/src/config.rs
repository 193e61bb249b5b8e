//! Configuration conversions: the JS layer maps KafkaJS options onto Kafka
//! property names (a plain string map); this module feeds that map to the
//! client's `from_properties` and attaches what a property cannot carry:
//! the OAUTHBEARER token callback (a JS async function, called through a
//! threadsafe function and awaited from Rust) and explicit AWS credentials
//! for MSK IAM (signed by the client's built-in signer).

use std::collections::HashMap;
use std::sync::Arc;

use futures::future::BoxFuture;
use napi::bindgen_prelude::Promise;
use napi::threadsafe_function::{ErrorStrategy, ThreadsafeFunction};
use napi::{Env, JsFunction, JsUnknown};
use napi_derive::napi;
use sluice::clock::now_ms;
use sluice::config::TokenProviderHandle;
use sluice::net::sasl::msk_iam::{AwsCredentials, MskIamTokenProvider};
use sluice::net::sasl::{OAuthToken, SaslError, TokenProvider};
use sluice::{ClientConfig, ConsumerConfig, ProducerConfig};

use crate::error::to_js;

/// What an `oauthBearerProvider` resolves to (KafkaJS: `{ value }`).
#[napi(object)]
pub struct JsOAuthToken {
    pub value: String,
    /// Token lifetime in ms from now (default: one hour).
    pub lifetime_ms: Option<f64>,
    /// Absolute expiry, ms since the epoch (aws-msk-iam-sasl-signer-js's `expiryTime`).
    pub expiry_time: Option<f64>,
    pub principal: Option<String>,
    pub extensions: Option<HashMap<String, String>>,
}

/// Explicit AWS credentials for `aws-msk-iam` (else the default chain).
#[napi(object)]
#[derive(Clone)]
pub struct JsAwsCredentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
    pub region: Option<String>,
}

type TokenFn = ThreadsafeFunction<(), ErrorStrategy::Fatal>;

struct JsTokenProvider(TokenFn);

impl TokenProvider for JsTokenProvider {
    fn token(&self) -> BoxFuture<'_, Result<OAuthToken, SaslError>> {
        Box::pin(async move {
            let fail = |e: napi::Error| {
                SaslError::AuthenticationFailed(format!("oauthBearerProvider failed: {}", e.reason))
            };
            let promise: Promise<JsOAuthToken> = self.0.call_async(()).await.map_err(fail)?;
            let t = promise.await.map_err(fail)?;
            let expires_at_ms = match (t.expiry_time, t.lifetime_ms) {
                (Some(at), _) => at as i64,
                (None, Some(l)) => now_ms() + l as i64,
                (None, None) => now_ms() + 3_600_000,
            };
            Ok(OAuthToken {
                value: t.value,
                expires_at_ms,
                principal: t.principal,
                extensions: t
                    .extensions
                    .map(|m| m.into_iter().collect())
                    .unwrap_or_default(),
            })
        })
    }
}

/// Everything a native client is built from.
pub struct Settings {
    pub props: Vec<(String, String)>,
    pub token: Option<TokenProviderHandle>,
}

impl Settings {
    /// Reads the property map and the optional callbacks; the threadsafe
    /// function is unref'd so it never keeps the process alive by itself.
    pub fn new(
        env: &Env,
        props: HashMap<String, String>,
        token_provider: Option<JsFunction>,
        aws: Option<JsAwsCredentials>,
    ) -> napi::Result<Settings> {
        let mut props: Vec<(String, String)> = props.into_iter().collect();
        let mut token = None;
        if let Some(f) = token_provider {
            let mut tsfn: TokenFn =
                f.create_threadsafe_function(0, |_ctx| Ok(Vec::<JsUnknown>::new()))?;
            tsfn.unref(env)?;
            token = Some(TokenProviderHandle(Arc::new(JsTokenProvider(tsfn))));
        } else if let Some(c) = aws {
            // The aws.* properties (region, role to assume) with these keys.
            let mut client = ClientConfig::default();
            for (k, v) in &props {
                if k.starts_with("aws.") {
                    client.set(k, v).map_err(to_js)?;
                }
            }
            let mut signer = MskIamTokenProvider::from_client_config(&client).with_credentials(
                AwsCredentials::new(c.access_key_id, c.secret_access_key, c.session_token),
            );
            if let Some(r) = c.region {
                signer = signer.with_region(r);
            }
            token = Some(TokenProviderHandle(Arc::new(signer)));
            // The signer's tokens travel over OAUTHBEARER, as aws-msk-iam-sasl-signer's do.
            props.retain(|(k, _)| k != "sasl.mechanism");
            props.push(("sasl.mechanism".into(), "OAUTHBEARER".into()));
        }
        Ok(Settings { props, token })
    }

    fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.props.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    pub fn producer(&self) -> napi::Result<ProducerConfig> {
        let mut c = ProducerConfig::from_properties(self.pairs()).map_err(to_js)?;
        c.client.sasl_oauth_token_provider = self.token.clone();
        Ok(c)
    }

    pub fn consumer(&self) -> napi::Result<ConsumerConfig> {
        let mut c = ConsumerConfig::from_properties(self.pairs()).map_err(to_js)?;
        c.client.sasl_oauth_token_provider = self.token.clone();
        Ok(c)
    }

    pub fn admin(&self) -> napi::Result<ClientConfig> {
        let mut c = ClientConfig::from_properties(self.pairs()).map_err(to_js)?;
        c.sasl_oauth_token_provider = self.token.clone();
        Ok(c)
    }
}

/// Runs an `oauthBearerProvider` exactly as a connection does (threadsafe
/// function, awaited from a tokio task) and resolves with the token's
/// value: a diagnostic for checking a provider without a SASL broker.
// Called from JavaScript only: the lib test build sees no caller.
#[cfg_attr(test, allow(dead_code))]
#[napi(ts_return_type = "Promise<string>")]
pub fn probe_oauth_bearer_provider(env: Env, provider: JsFunction) -> napi::Result<napi::JsObject> {
    let settings = Settings::new(&env, HashMap::new(), Some(provider), None)?;
    let handle = settings
        .token
        .ok_or_else(|| crate::error::usage("no provider"))?;
    env.spawn_future(async move {
        let t = handle
            .0
            .token()
            .await
            .map_err(|e| to_js(sluice::Error::Authentication(e.to_string())))?;
        Ok(t.value)
    })
}
