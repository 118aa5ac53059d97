//! Seed 000's vendor race against a real PostgreSQL and the sample backend's order API: the
//! racy route's double acceptances are caught and the database agrees with the API, the safe
//! route never has two winners, and a claimant that times out is not a loser (issue 5).

mod common;

use common::postgres::Postgres;
use common::{run_toml, Backend};
use plimsoll::report::{ProbeResult, RaceStats};
use plimsoll::verdict::Grade;

const VERIFY_QUERY: &str = "SELECT count(*) FROM vendor_routing_responses \
                            WHERE routing_id = $1 AND response = 'ACCEPTED'";

/// A race over the order API; `sizing` sets claimants and rounds, `db_url` adds verification.
fn order_race(backend: &str, route: &str, sizing: &str, db_url: Option<&str>) -> String {
    let verify = db_url.map_or(String::new(), |url| {
        format!("[probe.race.verify]\ndatabase_url = \"{url}\"\nquery = \"{VERIFY_QUERY}\"\n")
    });
    format!(
        r#"
[[target]]
name = "orders"
url = "{backend}"

[[probe]]
name = "vendor-race"
kind = "race"
target = "orders"
[probe.race]
{sizing}
timeout = "5s"
[probe.race.setup]
method = "POST"
url = "/orders"
[probe.race.claim]
method = "POST"
url = "/orders/{{{{id}}}}/{route}"
json = {{ vendor = "v{{{{claimant}}}}" }}
{verify}"#
    )
}

fn race_of(r: &ProbeResult) -> &RaceStats {
    r.race()
        .unwrap_or_else(|| panic!("no race block: {}", r.to_json_pretty()))
}

/// Accepted rows per order, read straight from the database (not through the probe).
fn accepted_per_order(db_url: &str) -> Vec<i64> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let pool = sqlx::PgPool::connect(db_url).await.unwrap();
        sqlx::query_scalar(
            "SELECT count(*) FROM vendor_routing_responses WHERE response = 'ACCEPTED' \
             GROUP BY routing_id ORDER BY routing_id",
        )
        .fetch_all(&pool)
        .await
        .unwrap()
    })
}

#[test]
fn racy_route_double_acceptances_are_caught_and_the_database_agrees() {
    let pg = Postgres::start();
    let backend = Backend::start_with(&["--database-url", &pg.url]);
    let r = run_toml(&order_race(
        &backend.url,
        "accept-racy",
        "claimants = 10\nrounds = 200",
        Some(&pg.url),
    ));
    let race = race_of(&r);
    eprintln!("racy route: {}", serde_json::to_string(race).unwrap());
    assert_eq!(race.rounds, 200);
    assert!(race.multiple_winners > 0, "no race caught in 200 rounds");
    assert_eq!(
        race.single_winner + race.multiple_winners + race.no_winner,
        200
    );
    // Every claim got an answer: 2000 claims, each won or lost.
    let won = race.claims_by_outcome.get("won").copied().unwrap_or(0);
    let lost = race.claims_by_outcome.get("lost").copied().unwrap_or(0);
    assert_eq!(won + lost, 2000, "{:?}", race.claims_by_outcome);
    // The racy route stores exactly what it answers, so the database saw the same winners as
    // the API in every round.
    assert_eq!(race.verify_errors, Some(0));
    assert_eq!(race.verify_mismatches, Some(0));
    // And the database, read independently, holds the same double acceptances.
    let per_order = accepted_per_order(&pg.url);
    assert_eq!(per_order.iter().sum::<i64>() as u64, won);
    let doubled = per_order.iter().filter(|n| **n > 1).count() as u64;
    assert_eq!(doubled, race.multiple_winners);
    assert_eq!(r.grade, Grade::Critical, "a race is a breaking point");
    assert!(r
        .thresholds
        .iter()
        .any(|t| t.metric == "race_rate" && t.grade >= Grade::Warning));
    assert!(!race.suspect_rounds.is_empty());
}

#[test]
fn safe_route_has_exactly_one_winner_every_round() {
    let pg = Postgres::start();
    let backend = Backend::start_with(&["--database-url", &pg.url]);
    let r = run_toml(&order_race(
        &backend.url,
        "accept",
        "claimants = 10\nrounds = 500",
        Some(&pg.url),
    ));
    let race = race_of(&r);
    eprintln!("safe route: {}", serde_json::to_string(race).unwrap());
    assert_eq!(race.rounds, 500);
    assert_eq!(race.single_winner, 500);
    assert_eq!(race.multiple_winners, 0);
    assert_eq!(race.claims_by_outcome.get("won"), Some(&500));
    assert_eq!(race.claims_by_outcome.get("lost"), Some(&4500));
    assert_eq!(race.verify_mismatches, Some(0));
    assert_eq!(accepted_per_order(&pg.url), vec![1; 500]);
    // The claims of a round leave from one task, microseconds apart.
    assert!(
        race.send_spread_ms.p50 < 1.0,
        "claims left {} ms apart (p50)",
        race.send_spread_ms.p50
    );
    assert!(r.grade <= Grade::Good, "{}", r.to_json_pretty());
}

#[test]
fn a_claimant_that_times_out_is_counted_as_timeout_not_as_a_loser() {
    let backend = Backend::start();
    // Claimant 0 answers at once, 1 after 1 s, 2 after 2 s; the timeout falls in between. The
    // JSON rule makes the immediate answer the only win.
    let r = run_toml(&format!(
        r#"
[[probe]]
name = "slow-claimants"
kind = "race"
[probe.race]
claimants = 3
rounds = 2
timeout = "1500ms"
win_pointer = "/delayed_ms"
win_equals = 0
[probe.race.claim]
url = "{}/delay?ms={{{{claimant}}}}000"
"#,
        backend.url
    ));
    let race = race_of(&r);
    let by = &race.claims_by_outcome;
    assert_eq!(by.get("won"), Some(&2), "{by:?}");
    assert_eq!(by.get("lost"), Some(&2), "{by:?}");
    assert_eq!(by.get("timeout"), Some(&2), "{by:?}");
    assert_eq!(race.single_winner, 2);
    assert!(race.error_samples["timeout"].contains("1s 500ms"));
    // The race time includes the claimant that was given up on.
    assert!(race.race_time_ms.min >= 1400.0, "{:?}", race.race_time_ms);
}

#[test]
fn without_a_database_the_in_memory_orders_race_the_same_way() {
    let backend = Backend::start();
    let racy = run_toml(&order_race(
        &backend.url,
        "accept-racy",
        r#"level = "light""#,
        None,
    ));
    let race = race_of(&racy);
    assert_eq!(race.claimants, 5, "light is 5 claimants");
    assert_eq!(race.rounds, 20, "light is 20 rounds");
    assert!(race.multiple_winners > 0, "{race:?}");
    assert_eq!(racy.grade, Grade::Critical);
    let safe = run_toml(&order_race(
        &backend.url,
        "accept",
        r#"level = "light""#,
        None,
    ));
    let race = race_of(&safe);
    assert_eq!((race.single_winner, race.multiple_winners), (20, 0));
}

#[test]
fn a_failing_setup_is_counted_and_no_round_runs() {
    let backend = Backend::start();
    let text = order_race(&backend.url, "accept", r#"level = "light""#, None)
        .replace("url = \"/orders\"\n", "url = \"/orders/unknown\"\n");
    let r = run_toml(&text);
    let race = race_of(&r);
    assert_eq!((race.rounds, race.setup_failures), (0, 20));
    assert!(race.error_samples["status"].contains("404"), "{race:?}");
    assert_eq!(r.grade, Grade::Critical);
}

#[test]
fn bad_race_configs_name_the_path() {
    let text = r#"
[[probe]]
name = "bad"
kind = "race"
[probe.race]
claimants = 1
rounds = 0
lose_status = [200]
win_pointer = "/accepted"
[probe.race.claim]
url = "http://127.0.0.1:1/orders/{{id}}/accept"
[probe.race.verify]
database_url = "env:PLIMSOLL_TEST_UNSET_RACE_DB"
query = "SELECT 1"
"#;
    let errors = plimsoll::config::load_str(text, std::iter::empty())
        .unwrap_err()
        .to_string();
    for expected in [
        "probe[0].race.claimants: must be between 2 and 100",
        "probe[0].race.rounds: must be greater than 0",
        "probe[0].race.lose_status: [200] also win",
        "probe[0].race.win_equals: missing",
        "probe[0].race.claim.url: `{{id}}` is only known with a `setup` request",
        "probe[0].race.verify: needs a `setup` request",
        "probe[0].race.verify.database_url: environment variable PLIMSOLL_TEST_UNSET_RACE_DB is not set",
        "probe[0].race.verify.query: must use `$1`",
    ] {
        assert!(errors.contains(expected), "missing {expected:?} in:\n{errors}");
    }
}
