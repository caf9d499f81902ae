//! Security basics on every role of a production deployment: ingest, a source's position
//! and resume refuse a request without the bearer token (or with a wrong one) when one is
//! set; the secrets of a run (the token, the store's password, a Kafka client password)
//! reach neither a log (at debug level) nor a reply.

mod common;

use common::deploy::*;
use common::*;

const TOKEN: &str = "tok-3f9a1c77e2b4";
const PG_PASSWORD: &str = "pgpw-8d2e6b41";
const KAFKA_SECRET: &str = "kpw-51c0e9aa";

#[test]
fn every_role_refuses_writes_without_the_token_and_no_secret_reaches_a_log_or_reply() {
    // The test database trusts local connections, so a password in the URL is carried
    // everywhere the URL goes but checked nowhere: what matters is where it shows up.
    let pg = topk_store::testing::Postgres::new();
    let store = pg.url.replacen("postgres@", &format!("postgres:{PG_PASSWORD}@"), 1);
    assert_ne!(store, pg.url, "the test URL names its user: {}", pg.url);
    let extra = format!("auth_token = {TOKEN:?}\n[kafka_properties]\n\"sasl.password\" = {KAFKA_SECRET:?}\n");
    let mut d = Deployment::on_store(&topk_log::testing::kafka_brokers(), &store, 2, &extra);
    d.set_env("TOPK_LOG", "debug");
    let roles = ["aggregator", "archive", "speed", "batch", "api"];
    let urls: Vec<(&str, String)> = roles.iter().map(|r| (*r, d.start(r, r, &[]))).collect();
    let client = reqwest::blocking::Client::new();
    let mut replies = String::new();
    for (role, url) in &urls {
        let writes = [
            client.post(format!("{url}/api/v1/events")).body("{}\n"),
            client.get(format!("{url}/api/v1/sources/7")),
            client.post(format!("{url}/api/v1/sources/kafka/resume")),
        ];
        for w in writes {
            for auth in [None, Some("Bearer wrong-token"), Some(&*format!("Basic {TOKEN}"))] {
                let w = w.try_clone().unwrap();
                let r = match auth {
                    Some(a) => w.header("Authorization", a),
                    None => w,
                }
                .send()
                .unwrap();
                let status = r.status();
                let text = r.text().unwrap();
                assert_eq!(status, 401, "{role} with {auth:?}: {text}");
                assert!(text.contains("bearer token"), "{role}: {text}");
                replies.push_str(&text);
            }
        }
    }
    // With the token, the API takes sales, and the deployment counts them exactly.
    let file = input(d.dir.path(), "events.ndjson", "5000", "31");
    let api = &urls.last().unwrap().1;
    let body = std::fs::read_to_string(&file).unwrap();
    let r = client.post(format!("{api}/api/v1/events")).bearer_auth(TOKEN).body(body).send().unwrap();
    assert_eq!(r.status(), 200);
    replies.push_str(&r.text().unwrap());
    // An error reply that involves the store and the broker.
    for path in ["/api/v1/top?granularity=day&start=nonsense", "/healthz", "/metrics", "/api/v1/sources/kafka"] {
        replies.push_str(&client.get(format!("{api}{path}")).send().unwrap().text().unwrap());
    }
    d.assert_exact(&bucket_truth(&full_truth(&file)));

    let logs: String = roles.iter().map(|r| d.tail_all(r)).collect();
    assert!(logs.contains("DEBUG"), "the roles logged at debug level");
    for secret in [TOKEN, PG_PASSWORD, KAFKA_SECRET] {
        for (what, text) in [("a role's log", &logs), ("a reply", &replies)] {
            let at = text.find(secret).map(|i| &text[i.saturating_sub(200)..(i + 100).min(text.len())]);
            assert!(at.is_none(), "{secret} is in {what}: …{}…", at.unwrap_or(""));
        }
    }
}
