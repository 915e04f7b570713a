//! Mailing due feedback (`feedback.rs`) to the MX it was pointed at: one
//! SMTP connection per report, the null sender, and the MX's answer kept in
//! the report.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sluice_smtp::read_reply;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::feedback::Due;
use crate::ledger::Ledger;
use crate::provider::lock;
use crate::report::SentFeedback;
use crate::session::unix_ms;

/// How often due feedback is looked for.
const TICK: Duration = Duration::from_millis(100);
/// Longest a whole SMTP exchange for one report may take.
const EXCHANGE: Duration = Duration::from_secs(15);
/// Longest reply line read.
const MAX_REPLY_LINE: usize = 4096;

/// Mails feedback as it falls due, until `stop` says so. Feedback still
/// waiting then is not sent.
pub(crate) async fn run(ledger: Arc<Mutex<Ledger>>, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = stop.wait_for(|stop| *stop) => return,
            () = tokio::time::sleep(TICK) => {}
        }
        let Some((mx, ready)) = take_ready(&ledger) else {
            continue;
        };
        for due in ready {
            let answer = match tokio::time::timeout(EXCHANGE, mail(mx, &due)).await {
                Ok(Ok(answer)) => answer,
                Ok(Err(err)) => format!("error: {err}"),
                Err(_) => format!("error: no answer within {EXCHANGE:?}"),
            };
            tracing::debug!(kind = due.kind.name(), recipient = %due.recipient, %answer, "feedback mailed");
            lock(&ledger).feedback_sent.push(SentFeedback {
                kind: due.kind.name().to_string(),
                recipient: due.recipient.clone(),
                message_id: due.message_id.clone(),
                to: due.to().to_string(),
                answer,
            });
        }
    }
}

/// The MX and the feedback due now, taken out of the queue; none while no
/// MX is known.
fn take_ready(ledger: &Mutex<Ledger>) -> Option<(SocketAddr, Vec<Due>)> {
    let mut ledger = lock(ledger);
    let mx = ledger.feedback_mx?;
    let now = unix_ms();
    let (ready, waiting) = std::mem::take(&mut ledger.feedback_due)
        .into_iter()
        .partition(|due| due.at_unix_ms <= now);
    ledger.feedback_due = waiting;
    Some((mx, ready))
}

/// One SMTP transaction carrying `due`'s report; the last reply read, as
/// `"<code> <text>"`. A refusal ends the exchange early with that refusal.
async fn mail(mx: SocketAddr, due: &Due) -> std::io::Result<String> {
    let stream = TcpStream::connect(mx).await?;
    let mut conn = BufReader::new(stream);
    let mut last = reply(&mut conn).await?;
    let commands = [
        format!("EHLO {}", due.reporter),
        "MAIL FROM:<>".to_string(),
        format!("RCPT TO:<{}>", due.to()),
        "DATA".to_string(),
        dot_stuffed(&due.report()),
    ];
    for command in commands {
        if !last.starts_with('2') && !last.starts_with("354") {
            break;
        }
        conn.get_mut()
            .write_all(format!("{command}\r\n").as_bytes())
            .await?;
        last = reply(&mut conn).await?;
    }
    let _ = conn.get_mut().write_all(b"QUIT\r\n").await;
    Ok(last)
}

async fn reply(conn: &mut BufReader<TcpStream>) -> std::io::Result<String> {
    let reply = read_reply(conn, MAX_REPLY_LINE)
        .await
        .map_err(|err| std::io::Error::other(err.to_string()))?;
    let enhanced = reply.enhanced.map(|e| format!("{e} ")).unwrap_or_default();
    Ok(format!("{} {enhanced}{}", reply.code, reply.text))
}

/// `report` as DATA: leading dots doubled, ending with the lone dot (the
/// caller adds the final CRLF).
fn dot_stuffed(report: &str) -> String {
    let mut out = String::with_capacity(report.len() + 8);
    for line in report.trim_end_matches("\r\n").split("\r\n") {
        if line.starts_with('.') {
            out.push('.');
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.push('.');
    out
}

#[cfg(test)]
mod tests {
    use super::dot_stuffed;

    #[test]
    fn leading_dots_are_doubled_and_the_data_ends_with_a_dot() {
        assert_eq!(dot_stuffed("a\r\n.b\r\n"), "a\r\n..b\r\n.");
    }
}
