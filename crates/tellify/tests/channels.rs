//! Channels against real servers on 127.0.0.1: a small SMTP server that records what lettre
//! sends, and an axum server standing in for Twilio, webhook receivers and Slack.

use crate::support;

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::net::TcpListener;

use support::{free_port, HttpSink, RcptReply, Request, SmtpSink};

use tellify::channels::{
    webhook, Channel, ChannelError, Channels, ChatChannel, ContactKind, ContactTarget,
    EmailChannel, OutgoingMessage, SmsChannel, SmsSettings, SmtpSecurity, SmtpSettings,
    WebhookChannel,
};
use tellify::outbound::{OutboundClient, OutboundGuard, OutboundSettings};

const SMTP_PASSWORD: &str = "smtp-pa55word";
const SMS_TOKEN: &str = "tok-secret";

fn install_ring() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn message() -> OutgoingMessage {
    OutgoingMessage {
        delivery_id: "01JDELIVERY0000000000000000".to_string(),
        subject: "[critical] disk full on db-1".to_string(),
        text: "Disk /var is 99% full on db-1.".to_string(),
        html: "<p>Disk <b>/var</b> is 99% full on db-1.</p>".to_string(),
        chat: "Disk /var is 99% full on db-1.".to_string(),
        sms: "CRITICAL disk full\non db-1: /var at 99%".to_string(),
        payload: serde_json::to_vec(
            &serde_json::json!({"alert": "disk full", "host": "db-1", "severity": "critical"}),
        )
        .unwrap()
        .into(),
    }
}

fn target(kind: ContactKind, address: &str) -> ContactTarget {
    ContactTarget {
        kind,
        name: "ops".to_string(),
        address: address.to_string(),
        secret: None,
    }
}

// ---------------------------------------------------------------------------------------------
// SMTP

fn smtp_settings(port: u16) -> SmtpSettings {
    SmtpSettings {
        host: Some("127.0.0.1".to_string()),
        port,
        security: SmtpSecurity::None,
        username: None,
        password: None,
        from: "Tellify <alerts@tellify.test>".to_string(),
        timeout_secs: 2,
    }
}

#[tokio::test]
async fn email_is_delivered_as_multipart_alternative_with_message_id() {
    install_ring();
    let smtp = SmtpSink::start().await;
    let port = smtp.port;
    let channel = EmailChannel::new(&smtp_settings(port)).expect("email channel");

    let receipt = channel
        .send(
            &target(ContactKind::Email, "oncall@example.com"),
            &message(),
        )
        .await
        .expect("sent");

    assert_eq!(receipt.detail, "250 2.0.0 Ok: queued as SINK42");
    let mails = smtp.mails();
    assert_eq!(mails.len(), 1);
    let mail = &mails[0];
    assert_eq!(mail.from, "alerts@tellify.test");
    assert_eq!(mail.to, vec!["oncall@example.com".to_string()]);
    let data = &mail.data;
    assert!(
        data.contains("From: Tellify <alerts@tellify.test>\r\n"),
        "{data}"
    );
    assert!(data.contains("To: oncall@example.com\r\n"), "{data}");
    assert!(
        data.contains("Subject: [critical] disk full on db-1\r\n"),
        "{data}"
    );
    assert!(
        data.contains("Message-ID: <01JDELIVERY0000000000000000@tellify>\r\n"),
        "{data}"
    );
    assert!(
        data.contains("Content-Type: multipart/alternative;"),
        "{data}"
    );
    let plain = data.find("Content-Type: text/plain").expect("text part");
    let html = data.find("Content-Type: text/html").expect("html part");
    assert!(
        plain < html,
        "text part must come first so clients prefer html"
    );
    assert!(data.contains("Disk /var is 99% full on db-1."), "{data}");
    assert!(
        data.contains("<p>Disk <b>/var</b> is 99% full on db-1.</p>"),
        "{data}"
    );
}

#[tokio::test]
async fn email_pooled_connection_is_reused_for_a_second_message() {
    install_ring();
    let smtp = SmtpSink::start().await;
    let port = smtp.port;
    let channel = EmailChannel::new(&smtp_settings(port)).expect("email channel");
    let to = target(ContactKind::Email, "oncall@example.com");
    let mut second = message();
    second.delivery_id = "second".to_string();

    channel.send(&to, &message()).await.expect("first");
    channel.send(&to, &second).await.expect("second");

    let mails = smtp.mails();
    assert_eq!(mails.len(), 2);
    assert!(mails[1].data.contains("Message-ID: <second@tellify>"));
}

#[tokio::test]
async fn email_to_a_server_that_is_not_running_is_retryable_and_hides_the_password() {
    install_ring();
    let settings = SmtpSettings {
        username: Some("tellify".to_string()),
        password: Some(SMTP_PASSWORD.to_string()),
        ..smtp_settings(free_port())
    };
    let channel = EmailChannel::new(&settings).expect("email channel");

    let error = channel
        .send(
            &target(ContactKind::Email, "oncall@example.com"),
            &message(),
        )
        .await
        .expect_err("nothing listens");

    assert!(error.is_retryable(), "{error:?}");
    let text = error.to_string();
    assert!(text.contains("127.0.0.1"), "{text}");
    assert!(!text.contains(SMTP_PASSWORD), "{text}");
    assert!(!format!("{error:?}").contains(SMTP_PASSWORD));
    assert!(!format!("{settings:?}").contains(SMTP_PASSWORD));
}

#[tokio::test]
async fn email_rejected_with_5xx_is_permanent_and_4xx_is_retryable() {
    install_ring();
    let to = target(ContactKind::Email, "nobody@example.com");

    let smtp = SmtpSink::start_with(RcptReply::Permanent).await;
    let channel = EmailChannel::new(&smtp_settings(smtp.port)).expect("email channel");
    let error = channel.send(&to, &message()).await.expect_err("550");
    assert!(matches!(error, ChannelError::Permanent(_)), "{error:?}");
    assert!(error.to_string().contains("550"), "{error}");

    let smtp = SmtpSink::start_with(RcptReply::Transient).await;
    let channel = EmailChannel::new(&smtp_settings(smtp.port)).expect("email channel");
    let error = channel.send(&to, &message()).await.expect_err("451");
    assert!(error.is_retryable(), "{error:?}");
    assert!(error.to_string().contains("451"), "{error}");
}

#[tokio::test]
async fn email_to_a_server_that_never_answers_times_out_as_retryable() {
    install_ring();
    // Accepts connections but never sends the greeting.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    let settings = SmtpSettings {
        timeout_secs: 1,
        ..smtp_settings(port)
    };
    let channel = EmailChannel::new(&settings).expect("email channel");

    let started = Instant::now();
    let error = channel
        .send(
            &target(ContactKind::Email, "oncall@example.com"),
            &message(),
        )
        .await
        .expect_err("silent server");

    assert!(error.is_retryable(), "{error:?}");
    assert!(started.elapsed() < Duration::from_secs(3), "send hung");
}

#[tokio::test]
async fn email_without_host_is_not_configured() {
    install_ring();
    let channels = Channels::new(
        &SmtpSettings::default(),
        &SmsSettings::default(),
        Duration::from_secs(2),
        &OutboundGuard::default(),
    )
    .expect("channels");

    let error = channels
        .get(ContactKind::Email)
        .send(
            &target(ContactKind::Email, "oncall@example.com"),
            &message(),
        )
        .await
        .expect_err("no host");

    assert!(matches!(error, ChannelError::NotConfigured(_)), "{error:?}");
    assert!(!error.is_retryable());
}

#[test]
fn smtp_settings_reject_username_without_password_and_a_bad_sender() {
    let no_password = SmtpSettings {
        username: Some("tellify".to_string()),
        ..smtp_settings(25)
    };
    assert!(EmailChannel::new(&no_password).is_err());
    let bad_from = SmtpSettings {
        from: "not an address".to_string(),
        ..smtp_settings(25)
    };
    assert!(EmailChannel::new(&bad_from).is_err());
}

// ---------------------------------------------------------------------------------------------
// HTTP

/// The guarded client with loopback allowed, since the sinks listen on 127.0.0.1.
fn client() -> OutboundClient {
    install_ring();
    loopback_guard()
        .client(Duration::from_secs(2))
        .expect("http client")
}

fn loopback_guard() -> OutboundGuard {
    OutboundGuard::new(&OutboundSettings {
        allow: vec!["127.0.0.0/8".to_string(), "::1".to_string()],
    })
    .expect("guard")
}

/// The guard as it is by default: nothing internal allowed.
fn default_client() -> OutboundClient {
    install_ring();
    OutboundGuard::default()
        .client(Duration::from_secs(2))
        .expect("http client")
}

fn header(request: &Request, name: &str) -> String {
    request
        .header(name)
        .unwrap_or_else(|| panic!("header {name} missing"))
}

// SMS

fn sms_channel(base: &str) -> SmsChannel {
    let settings = SmsSettings {
        url: base.to_string(),
        account: Some("AC123".to_string()),
        token: Some(SMS_TOKEN.to_string()),
        from: Some("+4930123456".to_string()),
    };
    SmsChannel::new(
        &settings,
        OutboundClient::unguarded(Duration::from_secs(2)).expect("client"),
    )
    .expect("sms channel")
}

fn form_fields(body: &[u8]) -> Vec<(String, String)> {
    let text = std::str::from_utf8(body).expect("utf-8 form");
    let url = reqwest::Url::parse(&format!("http://form.test/?{text}")).expect("form as query");
    url.query_pairs()
        .map(|(key, value)| (key.into_owned(), value.into_owned()))
        .collect()
}

#[tokio::test]
async fn sms_posts_a_form_with_basic_auth_and_returns_the_sid() {
    let sink = HttpSink::start(
        StatusCode::CREATED,
        r#"{"sid": "SM0123456789abcdef", "status": "queued"}"#,
    )
    .await;
    let base = sink.url("");
    let mut long = message();
    long.sms = format!("CRITICAL disk full\r\non db-1\n{}", "x".repeat(400));

    let receipt = sms_channel(&base)
        .send(&target(ContactKind::Sms, "+4915112345678"), &long)
        .await
        .expect("sent");

    assert_eq!(receipt.detail, "201 Created sid=SM0123456789abcdef");
    let requests = sink.requests();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(request.path, "/2010-04-01/Accounts/AC123/Messages.json");
    // base64("AC123:tok-secret")
    assert_eq!(
        header(request, "authorization"),
        "Basic QUMxMjM6dG9rLXNlY3JldA=="
    );
    assert!(header(request, "content-type").starts_with("application/x-www-form-urlencoded"));
    let fields = form_fields(&request.body);
    let field = |name: &str| {
        fields
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.clone())
            .unwrap_or_else(|| panic!("field {name} missing"))
    };
    assert_eq!(field("To"), "+4915112345678");
    assert_eq!(field("From"), "+4930123456");
    let body = field("Body");
    assert!(body.starts_with("CRITICAL disk full on db-1 xxx"), "{body}");
    assert!(!body.contains('\n') && !body.contains('\r'), "{body}");
    assert!(
        body.chars().count() <= 160,
        "{} chars",
        body.chars().count()
    );
}

#[tokio::test]
async fn sms_server_error_is_retryable_and_bad_request_is_permanent() {
    let to = target(ContactKind::Sms, "+4915112345678");

    let sink = HttpSink::start(StatusCode::INTERNAL_SERVER_ERROR, "upstream broke").await;
    let base = sink.url("");
    let error = sms_channel(&base)
        .send(&to, &message())
        .await
        .expect_err("500");
    assert!(error.is_retryable(), "{error:?}");

    let sink = HttpSink::start(StatusCode::TOO_MANY_REQUESTS, "slow down").await;
    let base = sink.url("");
    let error = sms_channel(&base)
        .send(&to, &message())
        .await
        .expect_err("429");
    assert!(error.is_retryable(), "{error:?}");

    let provider_answer = format!(
        r#"{{"code": 21211, "message": "The 'To' number is not valid {SMS_TOKEN}", "more": "{}"}}"#,
        "y".repeat(500)
    );
    let sink = HttpSink::start_templated(StatusCode::BAD_REQUEST, &provider_answer).await;
    let base = sink.url("");
    let error = sms_channel(&base)
        .send(&to, &message())
        .await
        .expect_err("400");
    assert!(matches!(error, ChannelError::Permanent(_)), "{error:?}");
    let text = error.to_string();
    assert!(text.contains("400"), "{text}");
    assert!(text.contains("21211"), "{text}");
    assert!(!text.contains(SMS_TOKEN), "{text}");
    assert!(text.len() < 400, "snippet not cut: {} bytes", text.len());
}

#[tokio::test]
async fn sms_network_failure_is_retryable() {
    let base = format!("http://127.0.0.1:{}", free_port());
    let error = sms_channel(&base)
        .send(&target(ContactKind::Sms, "+4915112345678"), &message())
        .await
        .expect_err("nothing listens");
    assert!(error.is_retryable(), "{error:?}");
}

#[tokio::test]
async fn sms_without_credentials_is_not_configured_and_names_what_is_missing() {
    let settings = SmsSettings {
        account: Some("AC123".to_string()),
        ..SmsSettings::default()
    };
    let channel = SmsChannel::new(&settings, client()).expect("sms channel");

    let error = channel
        .send(&target(ContactKind::Sms, "+4915112345678"), &message())
        .await
        .expect_err("no token");

    assert!(matches!(error, ChannelError::NotConfigured(_)), "{error:?}");
    assert!(!error.is_retryable());
    let text = error.to_string();
    assert!(text.contains("token") && text.contains("from"), "{text}");
    assert!(!text.contains("account"), "{text}");
}

// Webhook

fn hmac_hex(secret: &str, signed: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("hmac key");
    mac.update(signed);
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

#[tokio::test]
async fn webhook_posts_the_payload_signed_over_the_exact_bytes() {
    let sink = HttpSink::start(StatusCode::OK, "").await;
    let base = sink.url("");
    let now: jiff::Timestamp = "2026-11-23T10:00:00Z".parse().expect("timestamp");
    let mut to = target(ContactKind::Webhook, &format!("{base}/hooks/tellify"));
    to.secret = Some("whsec-shared".to_string());

    let receipt = WebhookChannel::new(client())
        .send_at(&to, &message(), now)
        .await
        .expect("sent");

    assert_eq!(receipt.detail, "200 OK");
    let requests = sink.requests();
    let request = &requests[0];
    assert_eq!(request.path, "/hooks/tellify");
    assert_eq!(header(request, "content-type"), "application/json");
    assert_eq!(
        header(request, "x-tellify-delivery"),
        "01JDELIVERY0000000000000000"
    );
    assert_eq!(
        header(request, "idempotency-key"),
        "01JDELIVERY0000000000000000"
    );
    let timestamp = header(request, "x-tellify-timestamp");
    assert_eq!(timestamp, now.as_second().to_string());
    let payload: serde_json::Value = serde_json::from_slice(&request.body).expect("json body");
    assert_eq!(request.body, message().payload, "the payload's exact bytes");
    assert_eq!(payload["host"], "db-1");

    let mut signed = format!("{timestamp}.").into_bytes();
    signed.extend_from_slice(&request.body);
    let expected = format!("sha256={}", hmac_hex("whsec-shared", &signed));
    assert_eq!(header(request, "x-tellify-signature"), expected);
    let timestamp: i64 = timestamp.parse().expect("unix seconds");
    assert_eq!(
        webhook::sign("whsec-shared", timestamp, &request.body),
        expected
    );
    assert_ne!(
        webhook::sign("other-secret", timestamp, &request.body),
        expected
    );
}

#[tokio::test]
async fn webhook_without_secret_is_sent_unsigned_with_the_current_time() {
    let sink = HttpSink::start(StatusCode::NO_CONTENT, "").await;
    let base = sink.url("");
    let before = jiff::Timestamp::now().as_second();

    WebhookChannel::new(client())
        .send(&target(ContactKind::Webhook, &base), &message())
        .await
        .expect("sent");

    let requests = sink.requests();
    let request = &requests[0];
    assert!(request.headers.get("x-tellify-signature").is_none());
    let timestamp: i64 = header(request, "x-tellify-timestamp")
        .parse()
        .expect("unix seconds");
    assert!(
        timestamp >= before && timestamp <= before + 5,
        "{timestamp}"
    );
}

#[tokio::test]
async fn webhook_answers_sort_into_retryable_and_permanent() {
    let cases = [
        (StatusCode::SERVICE_UNAVAILABLE, true),
        (StatusCode::REQUEST_TIMEOUT, true),
        (StatusCode::TOO_MANY_REQUESTS, true),
        (StatusCode::BAD_REQUEST, false),
        (StatusCode::GONE, false),
        (StatusCode::FOUND, false),
    ];
    for (status, retryable) in cases {
        let sink = HttpSink::start(status, "nope").await;
        let base = sink.url("");
        let error = WebhookChannel::new(client())
            .send(
                &target(ContactKind::Webhook, &format!("{base}/in")),
                &message(),
            )
            .await
            .expect_err("not 2xx");
        assert_eq!(error.is_retryable(), retryable, "{status}: {error:?}");
        assert!(
            error.to_string().contains(status.as_str()),
            "{status}: {error}"
        );
    }
}

// Chat

const CHAT_PATH: &str = "/services/T0000/B0000/XXXXsecretXXXX";

#[tokio::test]
async fn chat_posts_text_with_the_subject_in_bold() {
    let sink = HttpSink::start(StatusCode::OK, "ok").await;
    let base = sink.url("");

    let receipt = ChatChannel::new(client())
        .send(
            &target(ContactKind::Chat, &format!("{base}{CHAT_PATH}")),
            &message(),
        )
        .await
        .expect("sent");

    // Only the status: what answers a user's URL is not shown to the user.
    assert_eq!(receipt.detail, "200 OK");
    let requests = sink.requests();
    let request = &requests[0];
    assert_eq!(request.path, CHAT_PATH);
    assert_eq!(header(request, "content-type"), "application/json");
    let body: serde_json::Value = serde_json::from_slice(&request.body).expect("json body");
    assert_eq!(
        body,
        serde_json::json!({"text": "*[critical] disk full on db-1*\nDisk /var is 99% full on db-1."})
    );
}

#[tokio::test]
async fn chat_errors_never_show_the_webhook_path() {
    let sink = HttpSink::start_templated(StatusCode::NOT_FOUND, "no_service for {path}").await;
    let base = sink.url("");
    let url = format!("{base}{CHAT_PATH}");

    let error = ChatChannel::new(client())
        .send(&target(ContactKind::Chat, &url), &message())
        .await
        .expect_err("404");

    assert!(matches!(error, ChannelError::Permanent(_)), "{error:?}");
    let text = error.to_string();
    assert!(text.contains("404"), "{text}");
    assert!(text.contains(&base), "names scheme://host: {text}");
    assert!(!text.contains("XXXXsecretXXXX"), "{text}");
    assert!(!format!("{error:?}").contains("XXXXsecretXXXX"));

    let unreachable = format!("http://127.0.0.1:{}{CHAT_PATH}", free_port());
    let error = ChatChannel::new(client())
        .send(&target(ContactKind::Chat, &unreachable), &message())
        .await
        .expect_err("nothing listens");
    assert!(error.is_retryable(), "{error:?}");
    assert!(!error.to_string().contains("XXXXsecretXXXX"), "{error}");
}

#[tokio::test]
async fn chat_server_error_is_retryable() {
    let sink = HttpSink::start(StatusCode::BAD_GATEWAY, "").await;
    let base = sink.url("");
    let error = ChatChannel::new(client())
        .send(
            &target(ContactKind::Chat, &format!("{base}{CHAT_PATH}")),
            &message(),
        )
        .await
        .expect_err("502");
    assert!(error.is_retryable(), "{error:?}");
}

// ---------------------------------------------------------------------------------------------
// Kinds and addresses

#[test]
fn contact_kind_parses_its_names_and_rejects_others_naming_the_allowed_ones() {
    assert_eq!("email".parse::<ContactKind>(), Ok(ContactKind::Email));
    assert_eq!("sms".parse::<ContactKind>(), Ok(ContactKind::Sms));
    assert_eq!("webhook".parse::<ContactKind>(), Ok(ContactKind::Webhook));
    assert_eq!("chat".parse::<ContactKind>(), Ok(ContactKind::Chat));
    for bad in ["pager", "Email", ""] {
        let error = bad.parse::<ContactKind>().expect_err("unknown kind");
        for allowed in ["email", "sms", "webhook", "chat"] {
            assert!(error.contains(allowed), "{error}");
        }
    }
    assert_eq!(
        serde_json::to_string(&ContactKind::Webhook).expect("json"),
        "\"webhook\""
    );
    assert_eq!(ContactKind::Chat.as_str(), "chat");
}

#[test]
fn contact_target_debug_hides_the_secret() {
    let mut to = target(ContactKind::Webhook, "https://example.com/hook");
    to.secret = Some("whsec-shared".to_string());
    let printed = format!("{to:?}");
    assert!(!printed.contains("whsec-shared"), "{printed}");
    assert!(printed.contains("***"), "{printed}");
}

#[test]
fn addresses_are_checked_per_kind() {
    install_ring();
    let channels = Channels::new(
        &SmtpSettings::default(),
        &SmsSettings::default(),
        Duration::from_secs(2),
        &OutboundGuard::default(),
    )
    .expect("channels");
    for kind in [
        ContactKind::Email,
        ContactKind::Sms,
        ContactKind::Webhook,
        ContactKind::Chat,
    ] {
        assert_eq!(channels.get(kind).kind(), kind);
    }

    let good = [
        (ContactKind::Email, "oncall@example.com"),
        (ContactKind::Email, "first.last+tag@sub.example.org"),
        (ContactKind::Sms, "+4915112345678"),
        (ContactKind::Sms, "+14155550123"),
        (ContactKind::Webhook, "https://example.com/hooks/tellify"),
        (ContactKind::Webhook, "http://localhost:9000/in"),
        (
            ContactKind::Chat,
            "https://hooks.slack.com/services/T0/B0/xyz",
        ),
    ];
    for (kind, address) in good {
        assert_eq!(
            channels.check_address(kind, address),
            Ok(()),
            "{kind} {address}"
        );
    }

    let bad = [
        (ContactKind::Email, "oncall"),
        (ContactKind::Email, "oncall@"),
        (ContactKind::Email, "@example.com"),
        (ContactKind::Email, "on call@example.com"),
        (ContactKind::Sms, "015112345678"),
        (ContactKind::Sms, "+49 151 12345678"),
        (ContactKind::Sms, "+0123456789"),
        (ContactKind::Sms, "+1234567890123456"),
        (ContactKind::Sms, "+49abc"),
        (ContactKind::Webhook, "ftp://example.com/in"),
        (ContactKind::Webhook, "example.com/in"),
        (ContactKind::Webhook, ""),
        (ContactKind::Webhook, "http://127.0.0.1:9000/in"),
        (ContactKind::Webhook, "http://[::1]:9000/in"),
        (ContactKind::Webhook, "http://2130706433:9000/in"),
        (ContactKind::Webhook, "http://169.254.169.254/latest"),
        (ContactKind::Chat, "http://10.0.0.1/services/T0/B0/xyz"),
        (ContactKind::Engine, "http://0.0.0.0:8000"),
        (ContactKind::Chat, "mailto:ops@example.com"),
    ];
    for (kind, address) in bad {
        assert!(
            channels.check_address(kind, address).is_err(),
            "{kind} {address:?} accepted"
        );
    }

    let error = channels
        .check_address(
            ContactKind::Chat,
            "slack://hooks.slack.com/services/T0/B0/xyz",
        )
        .expect_err("bad scheme");
    assert!(!error.contains("xyz"), "{error}");
}

// ---------------------------------------------------------------------------------------------
// Outbound guard and answers

#[tokio::test]
async fn by_default_a_webhook_to_loopback_is_refused_for_good_and_never_sent() {
    let sink = HttpSink::start(StatusCode::OK, "").await;
    let port = sink.address.port();
    let literals = [
        format!("http://127.0.0.1:{port}/in"),
        format!("http://2130706433:{port}/in"),
        format!("http://0x7f.1:{port}/in"),
        format!("http://[::ffff:127.0.0.1]:{port}/in"),
    ];
    for url in literals {
        let error = WebhookChannel::new(default_client())
            .send(&target(ContactKind::Webhook, &url), &message())
            .await
            .expect_err("refused");
        assert!(
            matches!(error, ChannelError::Permanent(_)),
            "{url}: {error:?}"
        );
        let text = error.to_string();
        assert!(text.contains("is a loopback address"), "{url}: {text}");
        assert!(text.contains("[outbound] allow"), "{url}: {text}");
    }
    // A name is judged on what it resolves to, at connect time.
    let error = WebhookChannel::new(default_client())
        .send(
            &target(ContactKind::Webhook, &format!("http://localhost:{port}/in")),
            &message(),
        )
        .await
        .expect_err("refused after resolving");
    assert!(matches!(error, ChannelError::Permanent(_)), "{error:?}");
    let text = error.to_string();
    assert!(text.contains("localhost ("), "{text}");
    assert!(text.contains("is a loopback address"), "{text}");
    assert_eq!(sink.arrivals(), 0, "the sink was reached");
}

#[tokio::test]
async fn the_allow_list_lets_ranges_addresses_and_names_through() {
    let sink = HttpSink::start(StatusCode::OK, "").await;
    let port = sink.address.port();
    let cases = [
        (
            vec!["127.0.0.0/8"],
            format!("http://127.0.0.1:{port}/range"),
        ),
        (
            vec!["127.0.0.1"],
            format!("http://127.0.0.1:{port}/address"),
        ),
        (vec!["localhost"], format!("http://localhost:{port}/name")),
        (
            vec!["127.0.0.0/8", "::1"],
            format!("http://localhost:{port}/resolved"),
        ),
    ];
    for (allow, url) in cases {
        let guard = OutboundGuard::new(&OutboundSettings {
            allow: allow.iter().map(|entry| entry.to_string()).collect(),
        })
        .expect("guard");
        install_ring();
        let client = guard.client(Duration::from_secs(2)).expect("client");
        WebhookChannel::new(client)
            .send(&target(ContactKind::Webhook, &url), &message())
            .await
            .unwrap_or_else(|error| panic!("{allow:?} {url}: {error}"));
    }
    let paths: Vec<String> = sink.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(paths, ["/range", "/address", "/name", "/resolved"]);
}

#[tokio::test]
async fn a_webhook_error_never_quotes_what_answered() {
    let sink = HttpSink::start(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal page: db_password=SECRET-FROM-INSIDE",
    )
    .await;
    let mut to = target(ContactKind::Webhook, &sink.url("/in"));
    to.secret = Some("whsec-0123456789abcdef".to_string());
    let error = WebhookChannel::new(client())
        .send(&to, &message())
        .await
        .expect_err("500");
    let text = error.to_string();
    assert!(text.contains("500"), "{text}");
    assert!(!text.contains("SECRET-FROM-INSIDE"), "{text}");
    assert!(!text.contains("internal page"), "{text}");
}

#[tokio::test]
async fn an_sms_refusal_names_the_code_and_never_the_echoed_authorization() {
    // What a provider (or a proxy in front of it) might echo: the basic-auth header, the
    // token URL-encoded, and the token itself.
    let basic = "QUMxMjM6dG9rLXNlY3JldA=="; // base64 of "AC123:tok-secret"
    let answer = format!(
        r#"{{"code": 20003, "message": "Authenticate: Basic {basic} token={SMS_TOKEN} t=tok%2Dsecret"}}"#
    );
    let sink = HttpSink::start_templated(StatusCode::UNAUTHORIZED, answer).await;
    let error = sms_channel(&sink.url(""))
        .send(&target(ContactKind::Sms, "+4915112345678"), &message())
        .await
        .expect_err("401");
    let text = error.to_string();
    assert!(text.contains("401") && text.contains("20003"), "{text}");
    for leaked in [basic, "QUMxMjM6dG9rLXNlY3JldA", SMS_TOKEN, "Authenticate"] {
        assert!(!text.contains(leaked), "{leaked} in {text}");
    }
}
