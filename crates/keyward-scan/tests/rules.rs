//! Every built-in rule proves itself: each of its examples yields a finding
//! of the rule, and none of its negative examples does.

use keyward_scan::{engine, RuleSet, Scanner};

#[test]
fn every_rule_finds_its_examples_and_not_its_negative_examples() {
    let rules = RuleSet::builtin().expect("the built-in rules parse");
    let failures = engine::check_examples(&rules).expect("every rule compiles");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_built_in_rules_compile_together() {
    let rules = RuleSet::builtin().unwrap();
    let scanner = Scanner::new(&rules).unwrap();
    assert_eq!(scanner.rule_count(), rules.len());
    assert!(rules.len() >= 40, "{} rules", rules.len());
}
