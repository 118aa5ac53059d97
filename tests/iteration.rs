//! An iteration is several request steps run in order by one virtual user; a failed step ends
//! that iteration, and each step is counted under its own `endpoint` name.

mod common;

use common::{run_toml, Backend};

#[test]
fn steps_run_in_order_and_a_failure_ends_the_iteration() {
    let b = Backend::start();
    let text = format!(
        r#"
[[target]]
name = "sample"
url = "{}"

[[probe]]
name = "journey"
kind = "load"
target = "sample"
[probe.load]
concurrency = 3
iterations = 10

[[probe.load.steps]]
name = "health"
url = "/health"

[[probe.load.steps]]
url = "/status/500?attempt={{{{seq}}}}"

[[probe.load.steps]]
name = "never"
url = "/api/items"
"#,
        b.url
    );
    let r = run_toml(&text);
    let s = r.stats.as_ref().unwrap();
    assert_eq!(s.iterations.started, 30);
    assert_eq!(s.iterations.failed, 30);
    assert_eq!(s.endpoints["health"].requests, 30);
    assert_eq!(s.endpoints["health"].errors, 0);
    // An unnamed step is labelled by its path without the query string.
    assert_eq!(s.endpoints["/status/500"].requests, 30);
    assert_eq!(s.endpoints["/status/500"].errors_by_kind["status"], 30);
    assert!(!s.endpoints.contains_key("never") || s.endpoints["never"].requests == 0);
    assert_eq!(s.requests, 60);
    assert_eq!(r.grade, plimsoll::verdict::Grade::Critical);
}
