//! Unit tests of the Artillery conversion.

use super::*;

#[test]
fn json_paths_become_pointers() {
    assert_eq!(json_path_to_pointer("$.token").as_deref(), Some("/token"));
    assert_eq!(
        json_path_to_pointer("$.data.items[0].id").as_deref(),
        Some("/data/items/0/id")
    );
    assert_eq!(json_path_to_pointer("$['a b']").as_deref(), Some("/a b"));
    assert_eq!(json_path_to_pointer("$").as_deref(), Some(""));
    assert_eq!(json_path_to_pointer("$..id"), None);
    assert_eq!(json_path_to_pointer("$.items[*].id"), None);
}

#[test]
fn a_small_script_converts_and_lists_what_it_drops() {
    let yaml = r#"
config:
  target: "http://127.0.0.1:9"
  phases:
    - { duration: 10, arrivalCount: 50, name: "count" }
    - { duration: "1m", arrivalRate: 0, rampTo: 5 }
    - { pause: 5 }
  processor: "./p.js"
scenarios:
  - flow:
      - post:
          url: "/calls"
          json: { to: "{{ $randomNumber(1, 9) }}" }
          capture: [ { json: "$.id", as: "id" }, { json: "$.state", as: "state" } ]
          expect: [ { statusCode: 201 }, { equals: ["{{ state }}", "INITIATED"] } ]
      - think: 2
      - loop:
          - get: { url: "/calls/{{ id }}?t={{ token }}" }
        count: 3
      - function: "doIt"
"#;
    let c = convert(yaml, "x").unwrap();
    let all: String = c.dropped.iter().map(|d| format!("{d}\n")).collect();
    for needle in [
        "config.processor:",
        "config.phases[0].arrivalCount: converted to an even rate of 5",
        "config.phases[2]: pause phases",
        "scenarios[0].flow[3].function:",
        "variable \"token\" is used but never set",
    ] {
        assert!(all.contains(needle), "{needle} missing from\n{all}");
    }
    let cfg = crate::config::load_str(&c.toml, std::iter::empty())
        .unwrap_or_else(|e| panic!("{e}\n{}", c.toml));
    let crate::config::ProbeSpec::Load(load) = &cfg.probe[0].spec else {
        panic!("not a load probe")
    };
    let steps = &load.scenarios[0].steps;
    assert_eq!(steps.len(), 2);
    assert_eq!(steps[0].think.unwrap().as_duration().as_secs(), 2);
    assert_eq!(steps[1].repeat, 3);
    let e = steps[0].expect.as_ref().unwrap();
    assert_eq!(e.json[0].pointer, "/state");
    assert_eq!(load.phases[0].rate, Some(5.0));
    assert!(c.toml.contains("{{random_number_1_9}}"), "{}", c.toml);
}

#[test]
fn non_scripts_are_refused() {
    assert!(matches!(
        convert("- a\n- b\n", "x"),
        Err(ImportError::NotAScript(_))
    ));
    assert!(matches!(
        convert("config: {}\n", "x"),
        Err(ImportError::NotAScript(_))
    ));
    assert!(matches!(
        convert("a: [", "x"),
        Err(ImportError::NotAScript(_))
    ));
}
