//! The metrics endpoint: hyper's HTTP/1.1 server on a current-thread tokio
//! runtime on the `sluice-metrics` thread. `GET`/`HEAD` `/metrics` (or `/`)
//! answer the exposition, in OpenMetrics when the `Accept` header asks for
//! it (Prometheus does) and the classic text format 0.0.4 otherwise; other
//! paths get 404, other methods 405. Connections are kept alive; hyper
//! answers malformed requests with 400 and closes them; a slow client's
//! headers time out. The same runtime ticks the meters every `TICK`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, ACCEPT, ALLOW, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};

use super::meter::TICK;
use super::METRICS;

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const TEXT_004: &str = "text/plain; version=0.0.4; charset=utf-8";
/// How long a client may take to send its request headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Binds `addr` and serves on its own thread until the process exits.
pub fn serve(addr: SocketAddr) -> std::io::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    let local = listener.local_addr()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()?;
    std::thread::Builder::new()
        .name("sluice-metrics".into())
        .spawn(move || {
            rt.block_on(async move {
                let listener = match tokio::net::TcpListener::from_std(listener) {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::error!(error = %e, "metrics endpoint cannot listen");
                        return;
                    }
                };
                tokio::spawn(async {
                    let mut every = tokio::time::interval(TICK);
                    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    loop {
                        every.tick().await;
                        METRICS.tick();
                    }
                });
                loop {
                    let stream = match listener.accept().await {
                        Ok((s, _)) => s,
                        Err(e) => {
                            // EMFILE and the like: wait instead of spinning.
                            tracing::warn!(error = %e, "metrics endpoint accept failed");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                    };
                    tokio::spawn(async move {
                        let served = hyper::server::conn::http1::Builder::new()
                            .timer(TokioTimer::new())
                            .header_read_timeout(HEADER_TIMEOUT)
                            .keep_alive(true)
                            .serve_connection(
                                TokioIo::new(stream),
                                hyper::service::service_fn(|req| async move {
                                    Ok::<_, Infallible>(answer(&req))
                                }),
                            )
                            .await;
                        if let Err(e) = served {
                            tracing::debug!(error = %e, "metrics connection ended");
                        }
                    });
                }
            });
        })?;
    Ok(local)
}

/// The response to one request (hyper leaves the body out for HEAD).
fn answer<B>(req: &Request<B>) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    if path != "/metrics" && path != "/" {
        return plain(
            StatusCode::NOT_FOUND,
            "not found: the metrics are at /metrics\n",
        );
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = plain(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n");
        r.headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    let openmetrics = req
        .headers()
        .get_all(ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(accepts_openmetrics);
    let body = METRICS.render();
    let (body, kind) = if openmetrics {
        (body, OPENMETRICS)
    } else {
        (to_text_004(&body), TEXT_004)
    };
    let mut r = Response::new(Full::new(Bytes::from(body)));
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(kind));
    r
}

fn plain(status: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// Whether an `Accept` value lists OpenMetrics with a non-zero quality.
fn accepts_openmetrics(accept: &str) -> bool {
    accept.split(',').any(|range| {
        let mut parts = range.split(';').map(str::trim);
        let media = parts.next().unwrap_or("");
        let refused = parts.any(|p| {
            p.strip_prefix("q=")
                .and_then(|q| q.parse::<f64>().ok())
                .is_some_and(|q| q <= 0.0)
        });
        media.eq_ignore_ascii_case("application/openmetrics-text") && !refused
    })
}

/// OpenMetrics text as the classic format 0.0.4: no `# EOF`, `unknown` is
/// `untyped`, and a counter's HELP and TYPE name its `_total` series.
pub(super) fn to_text_004(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    let mut help: Option<&str> = None;
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        if line.starts_with("# HELP ") {
            help = Some(line);
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.rsplit_once(' ').unwrap_or((rest, "untyped"));
            let (name, kind) = match kind {
                "counter" => (format!("{name}_total"), "counter"),
                "unknown" => (name.to_string(), "untyped"),
                k => (name.to_string(), k),
            };
            if let Some(h) = help.take() {
                let text = h["# HELP ".len()..].split_once(' ').map_or("", |(_, t)| t);
                out.push_str(&format!("# HELP {name} {text}\n"));
            }
            out.push_str(&format!("# TYPE {name} {kind}\n"));
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_negotiation() {
        let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert!(accepts_openmetrics(prometheus));
        assert!(!accepts_openmetrics("text/plain"));
        assert!(!accepts_openmetrics("*/*"));
        assert!(!accepts_openmetrics("application/openmetrics-text; q=0"));
    }

    #[test]
    fn classic_format_from_openmetrics() {
        let om = "# HELP sluice_requests Requests handled per API.\n# TYPE sluice_requests counter\nsluice_requests_total{api=\"Produce\"} 3\n# HELP kafka_x_Value K.\n# TYPE kafka_x_Value unknown\nkafka_x_Value{name=\"A\"} 1\n# EOF\n";
        assert_eq!(
            to_text_004(om),
            "# HELP sluice_requests_total Requests handled per API.\n# TYPE sluice_requests_total counter\nsluice_requests_total{api=\"Produce\"} 3\n# HELP kafka_x_Value K.\n# TYPE kafka_x_Value untyped\nkafka_x_Value{name=\"A\"} 1\n"
        );
    }
}
