//! Where log lines go: stdout in production ([`stdout`]), any writer in
//! tests. A tokio worker keeps its lines in a buffer of its own and writes
//! them out in one write when it is about to sleep (the runtime's
//! `on_thread_park` calls [`Lines::park`]) or when they reach [`LIMIT`];
//! any other thread, and a worker before it first sleeps, writes each line
//! straight through. So a request's line costs a copy into that buffer:
//! no allocation, no other thread woken, and under load one write(2)
//! carries many lines (docs/performance.md, "The log line's hand-over").
//!
//! Invariants: lines are written whole, never interleaved with another
//! thread's (one lock around the destination); each thread's lines keep
//! their order; none is dropped. Blocking, not lossy: when stdout is slow
//! the thread writing to it waits, so memory stays bounded, the slowdown
//! shows, and the access log never silently leaves requests out.

use std::cell::RefCell;
use std::io::{self, Write};
use std::sync::{Arc, LazyLock, Mutex, PoisonError};

use tracing_subscriber::fmt::MakeWriter;

/// A worker writes its lines out once they are this long, even without
/// sleeping: about forty access lines.
pub(crate) const LIMIT: usize = 16 * 1024;

type Out = Arc<Mutex<dyn Write + Send>>;

/// A destination of whole log lines, for the log layers.
#[derive(Clone)]
pub struct Lines(Out);

thread_local! {
    /// This thread's lines not yet written out and their destination;
    /// `None` on a thread that writes straight through.
    static PENDING: RefCell<Option<(Vec<u8>, Out)>> = const { RefCell::new(None) };
}

/// The process's stdout, shared by the log layers and the runtime's hooks.
pub fn stdout() -> &'static Lines {
    static STDOUT: LazyLock<Lines> = LazyLock::new(|| Lines::new(io::stdout()));
    &STDOUT
}

impl Lines {
    pub fn new(out: impl Write + Send + 'static) -> Self {
        Lines(Arc::new(Mutex::new(out)))
    }

    /// For the runtime's `on_thread_park`, which only its workers call:
    /// writes out this thread's lines, and from now on keeps them here
    /// until the thread next sleeps.
    pub fn park(&self) {
        let _ = PENDING.try_with(|pending| {
            let mut pending = pending.borrow_mut();
            match &mut *pending {
                Some((lines, out)) if Arc::ptr_eq(out, &self.0) => write_out(out, lines),
                _ => {
                    stop(&mut pending);
                    *pending = Some((Vec::with_capacity(LIMIT), Arc::clone(&self.0)));
                }
            }
        });
    }

    /// For the runtime's `on_thread_stop`: writes out this thread's lines;
    /// any later line goes straight through.
    pub fn stop() {
        let _ = PENDING.try_with(|pending| stop(&mut pending.borrow_mut()));
    }
}

fn stop(pending: &mut Option<(Vec<u8>, Out)>) {
    if let Some((mut lines, out)) = pending.take() {
        write_out(&out, &mut lines);
    }
}

/// Writes a thread's kept `lines` out, then empties them.
fn write_out(out: &Out, lines: &mut Vec<u8>) {
    if !lines.is_empty() {
        // Nowhere left to report a failed log write.
        let _ = write_locked(out, lines);
        lines.clear();
    }
}

/// Writes whole lines to `out` in one locked write: the one place lines
/// reach the destination, so no two threads' lines interleave.
fn write_locked(out: &Out, lines: &[u8]) -> io::Result<()> {
    let mut out = out.lock().unwrap_or_else(PoisonError::into_inner);
    out.write_all(lines)?;
    out.flush()
}

impl<'a> MakeWriter<'a> for Lines {
    type Writer = &'a Lines;

    fn make_writer(&'a self) -> &'a Lines {
        self
    }
}

/// Each `write` is one whole line (the log layers write a line at once).
impl Write for &Lines {
    fn write(&mut self, line: &[u8]) -> io::Result<usize> {
        let kept = PENDING
            .try_with(|pending| {
                // Taken: a line logged while this thread writes its lines out.
                let Ok(mut pending) = pending.try_borrow_mut() else { return false };
                match &mut *pending {
                    Some((lines, out)) if Arc::ptr_eq(out, &self.0) => {
                        lines.extend_from_slice(line);
                        if lines.len() >= LIMIT {
                            write_out(out, lines);
                        }
                        true
                    }
                    _ => false,
                }
            })
            .unwrap_or(false);
        if !kept {
            write_locked(&self.0, line)?;
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    /// A destination the tests read back (here and in the JSON layer's), counting the writes it got.
    #[derive(Clone, Default)]
    pub(crate) struct Shared(Arc<Mutex<(Vec<u8>, usize)>>);

    impl Shared {
        pub(crate) fn text(&self) -> String {
            String::from_utf8(self.0.lock().expect("shared").0.clone()).expect("utf8")
        }
        pub(super) fn writes(&self) -> usize {
            self.0.lock().expect("shared").1
        }
    }

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let mut shared = self.0.lock().expect("shared");
            shared.0.extend_from_slice(buf);
            shared.1 += 1;
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::Shared;
    use super::*;

    fn log(lines: &Lines, line: &str) {
        (&*lines).write_all(line.as_bytes()).expect("write");
    }

    #[test]
    fn a_worker_keeps_its_lines_until_it_sleeps_or_stops() {
        let shared = Shared::default();
        let lines = Lines::new(shared.clone());
        let other = Shared::default();
        std::thread::spawn(move || {
            log(&lines, "before the first park\n");
            assert_eq!(shared.text(), "before the first park\n", "straight through");

            lines.park();
            log(&lines, "one\n");
            log(&lines, "two\n");
            log(&Lines::new(other.clone()), "elsewhere\n");
            assert_eq!(shared.writes(), 1, "kept until the thread sleeps");
            assert_eq!(other.text(), "elsewhere\n", "another destination's line is not kept here");

            lines.park();
            assert_eq!(shared.text(), "before the first park\none\ntwo\n");
            assert_eq!(shared.writes(), 2, "both in one write");

            log(&lines, "three\n");
            Lines::stop();
            log(&lines, "four\n");
            assert_eq!(shared.text(), "before the first park\none\ntwo\nthree\nfour\n");
        })
        .join()
        .expect("thread");
    }

    #[test]
    fn a_busy_worker_writes_its_lines_out_at_the_limit() {
        let shared = Shared::default();
        let lines = Lines::new(shared.clone());
        std::thread::spawn(move || {
            lines.park();
            let line = format!("{}\n", "x".repeat(1023));
            for _ in 0..LIMIT / line.len() - 1 {
                log(&lines, &line);
            }
            assert_eq!(shared.writes(), 0);
            log(&lines, &line);
            assert_eq!((shared.writes(), shared.text().len()), (1, LIMIT));
        })
        .join()
        .expect("thread");
    }

    /// Lines from workers that keep them and from threads that do not
    /// arrive whole, each thread's in order, and none is lost.
    #[test]
    fn lines_of_many_threads_arrive_whole_and_in_order() {
        let shared = Shared::default();
        let lines = Lines::new(shared.clone());
        let threads: Vec<_> = (0..4)
            .map(|thread| {
                let lines = lines.clone();
                std::thread::spawn(move || {
                    for n in 0..500 {
                        if thread % 2 == 0 && n % 50 == 0 {
                            lines.park();
                        }
                        log(&lines, &format!("{thread} {n} {}\n", "y".repeat(n % 300)));
                    }
                    Lines::stop();
                })
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().expect("thread"));
        let mut next = [0; 4];
        for line in shared.text().lines() {
            let mut fields = line.split(' ');
            let (thread, n) = (fields.next().expect(line), fields.next().expect(line));
            let (thread, n): (usize, usize) = (thread.parse().expect(line), n.parse().expect(line));
            assert_eq!(n, next[thread], "{line}");
            assert_eq!(fields.next(), Some("y".repeat(n % 300).as_str()), "whole: {line}");
            next[thread] += 1;
        }
        assert_eq!(next, [500; 4]);
    }

    /// The hooks as `src/main.rs` installs them: every line a worker kept
    /// is written out by the time the runtime is dropped.
    #[test]
    fn a_runtime_writes_out_every_kept_line() {
        let shared = Shared::default();
        let lines = Lines::new(shared.clone());
        let park = lines.clone();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .on_thread_park(move || park.park())
            .on_thread_stop(Lines::stop)
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let tasks: Vec<_> = (0..200)
                .map(|task| {
                    let lines = lines.clone();
                    tokio::spawn(async move {
                        for n in 0..5 {
                            log(&lines, &format!("{task} {n}\n"));
                            tokio::task::yield_now().await;
                        }
                    })
                })
                .collect();
            for task in tasks {
                task.await.expect("task");
            }
        });
        drop(runtime);
        let mut logged: Vec<String> = shared.text().lines().map(str::to_owned).collect();
        logged.sort();
        let mut expected: Vec<String> = (0..200).flat_map(|t| (0..5).map(move |n| format!("{t} {n}"))).collect();
        expected.sort();
        assert_eq!(logged, expected);
    }
}
