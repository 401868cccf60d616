//! env_logger, the most used `log` backend, behind `ContextLog`: its text lines, captured,
//! carry each logging thread's own values.

use std::io::{self, Write};
use std::sync::{Arc, Mutex};

use ctx_log::ContextLog;
use ctx_vars::{Context, context_var};

#[context_var]
static REQUEST_ID: u64;
#[context_var]
static TENANT: String;
#[context_var]
static ATTEMPT: u32 = 1;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The one test of this binary: the logger is global, installed once.
#[test]
fn env_logger_lines_carry_the_context_they_were_logged_in() {
    let captured = Captured::default();
    let inner = env_logger::Builder::new()
        .filter_level(log::LevelFilter::Debug)
        .format_timestamp(None)
        .target(env_logger::Target::Pipe(Box::new(captured.clone())))
        .build();
    let logger = ContextLog::new(inner)
        .display_as("request_id", &REQUEST_ID)
        .display(&TENANT)
        .debug(&ATTEMPT);
    assert_eq!(
        logger.names().collect::<Vec<_>>(),
        ["request_id", "TENANT", "ATTEMPT"]
    );
    assert_eq!(logger.max_level(), log::LevelFilter::Debug);
    log::set_max_level(logger.max_level());
    log::set_boxed_logger(Box::new(logger)).unwrap();

    Context::new().run(|| {
        log::info!("outside");
        REQUEST_ID.set(7);
        TENANT.set("acme".into());
        log::info!(user = "ada"; "charged");
        log::debug!("debugging");
        log::trace!("filtered out");
        let workers: Vec<_> = (0..4u64)
            .map(|i| {
                ctx_vars::thread::spawn(move || {
                    REQUEST_ID.set(100 + i);
                    ATTEMPT.set(2);
                    log::warn!("worker {i}");
                })
            })
            .collect();
        for worker in workers {
            worker.join().unwrap();
        }
        log::info!("after");
    });
    std::thread::spawn(|| log::error!("plain thread"))
        .join()
        .unwrap();
    log::logger().flush();

    let out = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let line = |message: &str| {
        let found: Vec<&str> = out
            .lines()
            .filter(|line| line.contains(&format!("] {message}")))
            .collect();
        assert_eq!(found.len(), 1, "one line `{message}` in:\n{out}");
        found[0]
    };
    assert!(line("outside").ends_with("] outside ATTEMPT=1"), "{out}");
    assert!(
        line("charged").ends_with("] charged user=ada request_id=7 TENANT=acme ATTEMPT=1"),
        "the record's own key-values first, then the context's:\n{out}"
    );
    assert!(line("debugging").contains("request_id=7"), "{out}");
    assert!(!out.contains("filtered out"), "{out}");
    for i in 0..4 {
        let worker = line(&format!("worker {i}"));
        assert!(
            worker.ends_with(&format!(
                "] worker {i} request_id={} TENANT=acme ATTEMPT=2",
                100 + i
            )),
            "each thread its own id, the tenant inherited:\n{out}"
        );
    }
    assert!(
        line("after").ends_with("] after request_id=7 TENANT=acme ATTEMPT=1"),
        "the threads' sets stayed in the threads:\n{out}"
    );
    assert!(
        line("plain thread").ends_with("] plain thread ATTEMPT=1"),
        "{out}"
    );
}
