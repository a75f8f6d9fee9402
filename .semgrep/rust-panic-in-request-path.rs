// semgrep --test fixture: `ruleid:` lines must fire, `ok:` lines must not.
async fn handler(req: Request) -> Result<Response, Error> {
    // ruleid: rust-panic-in-request-path
    let word = req.uri().query().unwrap();
    // ruleid: rust-panic-in-request-path
    let n: u64 = word.parse().expect("a number");
    if n == 0 {
        // ruleid: rust-panic-in-request-path
        panic!("zero");
    }
    match n {
        1 => {}
        // ruleid: rust-panic-in-request-path
        _ => unreachable!("only one"),
    }
    // ruleid: rust-panic-in-request-path
    todo!()
}

async fn good(req: Request) -> Result<Response, Error> {
    // ok: rust-panic-in-request-path
    let word = req.uri().query().ok_or(Error::BadRequest)?;
    // ok: rust-panic-in-request-path
    let n: u64 = word.parse().unwrap_or(0);
    // ok: rust-panic-in-request-path
    let m = word.parse::<u64>().map_err(|_| Error::BadRequest)?;
    // ok: rust-panic-in-request-path
    let d = std::env::var("X").unwrap_or_default();
    Ok(respond(n + m, d))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses() {
        // ok: rust-panic-in-request-path
        let v: u64 = "1".parse().unwrap();
        let s = format!("{v:?} {{ unbalanced in a string, \
            continued on the next line");
        if v != 1 || s.is_empty() {
            // ok: rust-panic-in-request-path
            panic!("bad");
        }
    }
}

// A module that only looks like a test module is still checked.
mod helpers {
    fn f() -> u8 {
        // ruleid: rust-panic-in-request-path
        Some(1).unwrap()
    }
}
