//! The verification examples in docs/examples (Python and Node.js) accept
//! what the dispatcher signs and refuse an altered body or another secret.

use std::process::Command;

use sluice_webhooks::sign;

const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/examples");

fn python(secret: &str, header: &str, body: &str, now: u64) -> String {
    let script = format!(
        "import importlib.util, sys\n\
         spec = importlib.util.spec_from_file_location('r', '{EXAMPLES}/webhook_receiver.py')\n\
         m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n\
         print('ok' if m.verify(sys.argv[1].encode(), sys.argv[2], sys.argv[3].encode(), {now}) else 'refused')"
    );
    run(Command::new("python3").args(["-c", &script, secret, header, body]))
}

fn node(secret: &str, header: &str, body: &str, now: u64) -> String {
    let script = format!("{EXAMPLES}/webhook_verify.mjs");
    run(Command::new("node").args([&script, secret, header, body, &now.to_string()]))
}

fn run(command: &mut Command) -> String {
    let out = command.output().unwrap_or_else(|e| {
        panic!("cannot run {command:?} (python3 and node are needed for this test): {e}")
    });
    assert!(
        out.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
fn both_examples_verify_what_the_dispatcher_signs() {
    let secret = "a-webhook-secret-of-thirty-two-ch";
    let body = r#"{"id":"01JE","type":"délivered"}"#;
    let now = 1_764_583_200;
    let header = sign::signature(secret.as_bytes(), now, body.as_bytes());
    for check in [python, node] {
        assert_eq!(check(secret, &header, body, now + 10), "ok");
        assert_eq!(
            check(secret, &header, &body.replace("01JE", "01JF"), now),
            "refused"
        );
        assert_eq!(
            check("another-secret-of-thirty-two-char", &header, body, now),
            "refused"
        );
        assert_eq!(
            check(secret, &header, body, now + 301),
            "refused",
            "a stale post"
        );
    }
}
