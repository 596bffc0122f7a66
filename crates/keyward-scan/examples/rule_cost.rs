//! Which rules cost what: runs each built-in rule alone over every file
//! under a directory and prints the time each took, most expensive first.
//! For rule writers: a rule whose keywords are common and whose regex has no
//! literal to skip ahead with shows up at the top.
//!
//! `cargo run --release -p keyward-scan --example rule_cost -- DIR`

use std::time::{Duration, Instant};

use keyward_scan::{RuleSet, Scanner};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args().nth(1).ok_or("usage: rule_cost DIR")?;
    let mut contents = Vec::new();
    for entry in ignore::WalkBuilder::new(&dir).build().flatten() {
        if entry.file_type().is_some_and(|t| t.is_file()) {
            if let Ok(bytes) = std::fs::read(entry.path()) {
                if !keyward_scan::walk::is_binary(&bytes) && bytes.len() < 25 << 20 {
                    contents.push(bytes);
                }
            }
        }
    }
    let total: usize = contents.iter().map(Vec::len).sum();
    let all = RuleSet::builtin()?;
    let mut costs: Vec<(Duration, String, usize)> = Vec::new();
    for rule in all.rules() {
        let mut only = RuleSet::default();
        only.push(rule.clone());
        let scanner = Scanner::new(&only)?;
        let started = Instant::now();
        let found: usize = contents.iter().map(|c| scanner.find(c).len()).sum();
        costs.push((started.elapsed(), rule.id.clone(), found));
    }
    let scanner = Scanner::new(&all)?;
    let started = Instant::now();
    let found: usize = contents.iter().map(|c| scanner.find(c).len()).sum();
    let together = started.elapsed();
    costs.sort_by_key(|c| std::cmp::Reverse(c.0));
    println!(
        "{} files, {:.1} MB; all rules together: {:.0} ms, {found} findings",
        contents.len(),
        total as f64 / 1e6,
        together.as_secs_f64() * 1e3
    );
    for (cost, id, found) in costs.iter().take(25) {
        println!("{:>8.1} ms  {found:>5}  {id}", cost.as_secs_f64() * 1e3);
    }
    Ok(())
}
