//! A plain SMTP client for tests that play a remote server talking to the
//! inbound MX: one command at a time, whole replies back.

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// An SMTP client that sends one line and reads the whole reply.
pub struct Client(BufReader<TcpStream>);

impl Client {
    pub async fn connect(addr: &str) -> Self {
        let stream = TcpStream::connect(addr).await.expect("connect to the MX");
        let mut client = Self(BufReader::new(stream));
        let greeting = client.reply().await;
        assert!(greeting.starts_with("220"), "{greeting}");
        client
    }

    pub async fn reply(&mut self) -> String {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            self.0.read_line(&mut line).await.expect("read reply");
            all.push_str(&line);
            if line.len() < 4 || line.as_bytes()[3] == b' ' {
                return all;
            }
        }
    }

    pub async fn say(&mut self, line: &str) -> String {
        let stream = self.0.get_mut();
        stream
            .write_all(format!("{line}\r\n").as_bytes())
            .await
            .expect("write");
        self.reply().await
    }

    /// MAIL FROM:<> and RCPT TO:<to>; the RCPT reply.
    pub async fn envelope(&mut self, to: &str) -> String {
        assert!(self.say("MAIL FROM:<>").await.starts_with("250"));
        self.say(&format!("RCPT TO:<{to}>")).await
    }

    /// DATA with `message`; the final reply.
    pub async fn data(&mut self, message: &str) -> String {
        assert!(self.say("DATA").await.starts_with("354"));
        let body = format!("{}\r\n.", message.replace("\n.", "\n.."));
        self.say(&body).await
    }
}
