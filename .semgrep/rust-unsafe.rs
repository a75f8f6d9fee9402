// semgrep --test fixture: `ruleid:` lines must fire, `ok:` lines must not.
fn bad(p: *const u8) -> u8 {
    // ruleid: rust-unsafe
    unsafe { *p }
}

// ruleid: rust-unsafe
unsafe fn read(p: *const u8) -> u8 {
    *p
}

struct Wrapper(*mut u8);
// ruleid: rust-unsafe
unsafe impl Send for Wrapper {}

// ruleid: rust-unsafe
unsafe extern "C" {
    fn getpid() -> i32;
}

fn good(v: &[u8]) -> u8 {
    // ok: rust-unsafe
    let first = v.first().copied().unwrap_or(0);
    // ok: rust-unsafe
    let _msg = "unsafe is not allowed";
    first
}
