//! Shared by the browser and SMTP tests: an organization whose owner was
//! invited (and has not answered yet), and the invitation e-mail read the
//! way its recipient's mail program would (headers, decoded body, link).

use base64::Engine as _;
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::TestApp;
use crate::invite_helpers::ADMIN_EMAIL;

/// The organization.
pub const ORG_ID: &str = "acme";
/// Its display name.
pub const ORG_NAME: &str = "Acme Energy";
/// Its first owner, invited when the organization is created.
pub const OWNER_EMAIL: &str = "olivia@acme.example";

/// `POST /v1/orgs` as the system administrator: [`ORG_ID`] with
/// [`OWNER_EMAIL`] invited as its owner. Returns the owner's user id.
pub async fn create_org_inviting_the_owner(app: &TestApp) -> String {
    let body = json!({
        "id": ORG_ID,
        "name": ORG_NAME,
        "owner": {"first_name": "Olivia", "last_name": "Owner", "email": OWNER_EMAIL},
    });
    let reply = app.post(ADMIN_EMAIL, "/v1/orgs", &body).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    assert_eq!(reply.body["outcome"], "invited", "{}", reply.text);
    reply.body["user_id"]
        .as_str()
        .expect("the owner's user id")
        .to_owned()
}

/// The value of the first header `name` of an RFC 5322 message (unfolded).
pub fn header(raw: &str, name: &str) -> Option<String> {
    let raw = raw.replace("\r\n", "\n");
    let head = raw.split("\n\n").next().unwrap_or_default();
    let mut lines = head.lines().peekable();
    while let Some(line) = lines.next() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        if key.eq_ignore_ascii_case(name) {
            let mut value = value.trim().to_owned();
            while let Some(next) = lines.next_if(|l| l.starts_with([' ', '\t'])) {
                value.push(' ');
                value.push_str(next.trim());
            }
            return Some(value);
        }
    }
    None
}

/// The decoded text body of a single-part message: quoted-printable (with
/// its `=` soft line breaks), base64 or as is.
pub fn message_body(raw: &str) -> String {
    let unix = raw.replace("\r\n", "\n");
    let (_, body) = unix
        .split_once("\n\n")
        .unwrap_or_else(|| panic!("a message has headers, a blank line and a body: {raw}"));
    let encoding = header(raw, "Content-Transfer-Encoding")
        .unwrap_or_default()
        .to_ascii_lowercase();
    match encoding.as_str() {
        "quoted-printable" => decode_quoted_printable(body),
        "base64" => {
            let compact: String = body.split_whitespace().collect();
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(compact)
                .unwrap_or_else(|e| panic!("the base64 body does not decode ({e}): {body}"));
            String::from_utf8(bytes).expect("the body is UTF-8")
        }
        _ => body.to_owned(),
    }
}

/// RFC 2045 quoted-printable (lines already `\n`-terminated): `=\n` joins
/// lines, `=XX` is a byte.
fn decode_quoted_printable(body: &str) -> String {
    let joined = body.replace("=\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'=', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (other, _) => {
                out.push(other);
                i += 1;
            }
        }
    }
    String::from_utf8(out).expect("the decoded body is UTF-8")
}

/// The `<address>/invite/<secret>` link in a decoded message body: the
/// link must point at the server that sent it (`address`, its default
/// public URL) and carry a 256-bit base64url secret.
pub fn invite_link(address: &str, body: &str) -> String {
    let prefix = format!("{address}/invite/");
    let start = body
        .find(&prefix)
        .unwrap_or_else(|| panic!("no link starting with {prefix} in the message:\n{body}"));
    let link: String = body[start..]
        .chars()
        .take_while(|c| !c.is_whitespace())
        .collect();
    let secret = &link[prefix.len()..];
    assert_eq!(secret.len(), 43, "256 bits in base64url: {link}");
    assert!(
        secret
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
        "the secret is base64url: {link}"
    );
    link
}

/// The secret of an invitation link.
pub fn token_of(link: &str) -> &str {
    link.rsplit_once("/invite/")
        .map(|(_, secret)| secret)
        .unwrap_or_else(|| panic!("not an invitation link: {link}"))
}

#[test]
fn quoted_printable_bodies_are_decoded_across_soft_line_breaks() {
    // Arrange
    let raw = "To: a@b.example\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n\
               open http://127.0.0.1:8180/invite/abcdefghijklmnopqrstuvwxyz=\r\n\
               ABCDEFGHIJKLMNO-_ now =3D soon\r\n";

    // Act
    let body = message_body(raw);

    // Assert
    assert_eq!(
        body,
        "open http://127.0.0.1:8180/invite/abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNO-_ now = soon\n"
    );
    assert_eq!(
        token_of(&invite_link("http://127.0.0.1:8180", &body)),
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNO-_"
    );
}
