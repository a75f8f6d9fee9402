// semgrep --test fixture: `ruleid:` lines must fire, `ok:` lines must not.
fn bad(word: &str, table: &str, limit: u32) {
    // ruleid: rust-sql-built-from-strings
    let _q = format!("SELECT corpus, SUM(word_count) FROM `{table}` WHERE word = '{word}'");
    // ruleid: rust-sql-built-from-strings
    let _q = format!("SELECT corpus FROM t WHERE word = '{}' LIMIT {}", word, limit);
    let mut s = String::new();
    // ruleid: rust-sql-built-from-strings
    let _ = write!(s, "select * from t where w = {}", word);
    // ruleid: rust-sql-built-from-strings
    let _q = "SELECT corpus FROM t".to_string() + word;
    // ruleid: rust-sql-built-from-strings
    let _q = s.clone() + " WHERE word = '";
    // ruleid: rust-sql-built-from-strings
    s.push_str(" WHERE word = ");
    // ruleid: rust-sql-built-from-strings
    let _q = ["SELECT corpus FROM t WHERE word = '", word, "'"].concat();
}

fn good(word: &str) {
    // ok: rust-sql-built-from-strings
    let _q = "SELECT corpus, SUM(word_count) AS n FROM t WHERE word = @word GROUP BY corpus";
    // ok: rust-sql-built-from-strings
    let _msg = format!("no rows selected for {word}");
    // ok: rust-sql-built-from-strings
    let _msg = format!("SELECT failed");
    // ok: rust-sql-built-from-strings
    let _path = String::from("/api/v1/") + word;
}
