//! OAUTHBEARER tokens from a Python object: kafka-python's
//! `AbstractTokenProvider` shape, `token()` returning the token string (or
//! `(token, expiry_ms)` as aws-msk-iam-sasl-signer's
//! `generate_auth_token` does) and an optional `extensions()` dict. The call
//! runs on a blocking-pool thread with the GIL held, never on a runtime
//! worker, and a failure or panic becomes a SASL error, not a crash.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};
use sluice::clock::now_ms;
use sluice::net::sasl::{OAuthToken, SaslError, TokenProvider};

/// Lifetime assumed for a token whose provider does not say (MSK IAM
/// tokens last 15 minutes).
const DEFAULT_LIFETIME: Duration = Duration::from_secs(15 * 60);

pub struct PyTokenProvider {
    obj: Arc<Py<PyAny>>,
}

impl PyTokenProvider {
    pub fn new(obj: Py<PyAny>) -> Self {
        PyTokenProvider { obj: Arc::new(obj) }
    }
}

fn call(obj: &Py<PyAny>) -> Result<OAuthToken, SaslError> {
    Python::attach(|py| {
        let provider = obj.bind(py);
        let fail = |e: PyErr| {
            SaslError::TokenProvider(format!("sasl_oauth_token_provider.token() failed: {e}"))
        };
        let answer = provider.call_method0("token").map_err(fail)?;
        let (value, expires_at_ms) = if let Ok(t) = answer.cast::<PyTuple>() {
            let value: String = t.get_item(0).and_then(|v| v.extract()).map_err(fail)?;
            let expiry: i64 = t.get_item(1).and_then(|v| v.extract()).map_err(fail)?;
            (value, expiry)
        } else {
            let value: String = answer.extract().map_err(fail)?;
            (value, now_ms() + DEFAULT_LIFETIME.as_millis() as i64)
        };
        let mut extensions = Vec::new();
        if provider.hasattr("extensions").unwrap_or(false) {
            let ext = provider.call_method0("extensions").map_err(fail)?;
            if !ext.is_none() {
                let d = ext.cast::<PyDict>().map_err(|e| fail(e.into()))?;
                for (k, v) in d.iter() {
                    extensions.push((
                        k.extract::<String>().map_err(fail)?,
                        v.extract::<String>().map_err(fail)?,
                    ));
                }
            }
        }
        Ok(OAuthToken {
            value,
            expires_at_ms,
            principal: None,
            extensions,
        })
    })
}

impl TokenProvider for PyTokenProvider {
    fn token(&self) -> BoxFuture<'_, Result<OAuthToken, SaslError>> {
        let obj = self.obj.clone();
        Box::pin(async move {
            let joined = tokio::task::spawn_blocking(move || {
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| call(&obj)))
                    .unwrap_or_else(|_| {
                        Err(SaslError::TokenProvider(
                            "the token provider call panicked".into(),
                        ))
                    })
            })
            .await;
            joined.unwrap_or_else(|e| {
                Err(SaslError::TokenProvider(format!(
                    "token provider task failed: {e}"
                )))
            })
        })
    }
}
