//! Request methods and response status codes.

use std::fmt;

/// A SIP request method. Methods are case-sensitive (RFC 3261 §7.1).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Method {
    /// INVITE (RFC 3261).
    Invite,
    /// ACK (RFC 3261).
    Ack,
    /// BYE (RFC 3261).
    Bye,
    /// CANCEL (RFC 3261).
    Cancel,
    /// OPTIONS (RFC 3261).
    Options,
    /// REGISTER (RFC 3261).
    Register,
    /// INFO (RFC 6086).
    Info,
    /// PRACK (RFC 3262).
    Prack,
    /// UPDATE (RFC 3311).
    Update,
    /// SUBSCRIBE (RFC 6665).
    Subscribe,
    /// NOTIFY (RFC 6665).
    Notify,
    /// REFER (RFC 3515).
    Refer,
    /// MESSAGE (RFC 3428).
    Message,
    /// PUBLISH (RFC 3903).
    Publish,
    /// Any other token (RFC 3261 §25.1 extension-method).
    Extension(String),
}

impl Method {
    /// Parses a method token; `None` if it is not a valid token.
    pub fn parse(token: &str) -> Option<Method> {
        Some(match token {
            "INVITE" => Method::Invite,
            "ACK" => Method::Ack,
            "BYE" => Method::Bye,
            "CANCEL" => Method::Cancel,
            "OPTIONS" => Method::Options,
            "REGISTER" => Method::Register,
            "INFO" => Method::Info,
            "PRACK" => Method::Prack,
            "UPDATE" => Method::Update,
            "SUBSCRIBE" => Method::Subscribe,
            "NOTIFY" => Method::Notify,
            "REFER" => Method::Refer,
            "MESSAGE" => Method::Message,
            "PUBLISH" => Method::Publish,
            other if !other.is_empty() && other.bytes().all(super::parse::is_token_char) => {
                Method::Extension(other.to_owned())
            }
            _ => return None,
        })
    }

    /// The method as it appears on the wire.
    pub fn as_str(&self) -> &str {
        match self {
            Method::Invite => "INVITE",
            Method::Ack => "ACK",
            Method::Bye => "BYE",
            Method::Cancel => "CANCEL",
            Method::Options => "OPTIONS",
            Method::Register => "REGISTER",
            Method::Info => "INFO",
            Method::Prack => "PRACK",
            Method::Update => "UPDATE",
            Method::Subscribe => "SUBSCRIBE",
            Method::Notify => "NOTIFY",
            Method::Refer => "REFER",
            Method::Message => "MESSAGE",
            Method::Publish => "PUBLISH",
            Method::Extension(s) => s,
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A response status code, 100–699.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StatusCode(u16);

impl StatusCode {
    /// 100 Trying.
    pub const TRYING: StatusCode = StatusCode(100);
    /// 180 Ringing.
    pub const RINGING: StatusCode = StatusCode(180);
    /// 183 Session Progress.
    pub const SESSION_PROGRESS: StatusCode = StatusCode(183);
    /// 200 OK.
    pub const OK: StatusCode = StatusCode(200);
    /// 400 Bad Request.
    pub const BAD_REQUEST: StatusCode = StatusCode(400);
    /// 401 Unauthorized.
    pub const UNAUTHORIZED: StatusCode = StatusCode(401);
    /// 403 Forbidden.
    pub const FORBIDDEN: StatusCode = StatusCode(403);
    /// 404 Not Found.
    pub const NOT_FOUND: StatusCode = StatusCode(404);
    /// 405 Method Not Allowed.
    pub const METHOD_NOT_ALLOWED: StatusCode = StatusCode(405);
    /// 407 Proxy Authentication Required.
    pub const PROXY_AUTHENTICATION_REQUIRED: StatusCode = StatusCode(407);
    /// 408 Request Timeout.
    pub const REQUEST_TIMEOUT: StatusCode = StatusCode(408);
    /// 415 Unsupported Media Type.
    pub const UNSUPPORTED_MEDIA_TYPE: StatusCode = StatusCode(415);
    /// 416 Unsupported URI Scheme.
    pub const UNSUPPORTED_URI_SCHEME: StatusCode = StatusCode(416);
    /// 420 Bad Extension.
    pub const BAD_EXTENSION: StatusCode = StatusCode(420);
    /// 423 Interval Too Brief.
    pub const INTERVAL_TOO_BRIEF: StatusCode = StatusCode(423);
    /// 480 Temporarily Unavailable.
    pub const TEMPORARILY_UNAVAILABLE: StatusCode = StatusCode(480);
    /// 481 Call/Transaction Does Not Exist.
    pub const CALL_DOES_NOT_EXIST: StatusCode = StatusCode(481);
    /// 482 Loop Detected.
    pub const LOOP_DETECTED: StatusCode = StatusCode(482);
    /// 483 Too Many Hops.
    pub const TOO_MANY_HOPS: StatusCode = StatusCode(483);
    /// 486 Busy Here.
    pub const BUSY_HERE: StatusCode = StatusCode(486);
    /// 487 Request Terminated.
    pub const REQUEST_TERMINATED: StatusCode = StatusCode(487);
    /// 488 Not Acceptable Here.
    pub const NOT_ACCEPTABLE_HERE: StatusCode = StatusCode(488);
    /// 491 Request Pending.
    pub const REQUEST_PENDING: StatusCode = StatusCode(491);
    /// 500 Server Internal Error.
    pub const SERVER_INTERNAL_ERROR: StatusCode = StatusCode(500);
    /// 501 Not Implemented.
    pub const NOT_IMPLEMENTED: StatusCode = StatusCode(501);
    /// 503 Service Unavailable.
    pub const SERVICE_UNAVAILABLE: StatusCode = StatusCode(503);
    /// 505 Version Not Supported.
    pub const VERSION_NOT_SUPPORTED: StatusCode = StatusCode(505);
    /// 513 Message Too Large.
    pub const MESSAGE_TOO_LARGE: StatusCode = StatusCode(513);
    /// 603 Decline.
    pub const DECLINE: StatusCode = StatusCode(603);

    /// A status code from its number; `None` outside 100–699 (RFC 3261 §7.2).
    pub fn new(code: u16) -> Option<StatusCode> {
        (100..=699).contains(&code).then_some(StatusCode(code))
    }

    /// The numeric code.
    pub fn code(self) -> u16 {
        self.0
    }

    /// 1xx.
    pub fn is_provisional(self) -> bool {
        self.0 < 200
    }

    /// 2xx.
    pub fn is_success(self) -> bool {
        (200..300).contains(&self.0)
    }

    /// 200–699.
    pub fn is_final(self) -> bool {
        self.0 >= 200
    }

    /// The class digit: 1 for 1xx, ..., 6 for 6xx.
    pub fn class(self) -> u8 {
        // Invariant: 100 <= code <= 699, so the quotient fits in a u8.
        (self.0 / 100) as u8
    }

    /// The reason phrase RFC 3261 §21 gives for this code (or a generic one for its class).
    pub fn default_reason(self) -> &'static str {
        match self.0 {
            100 => "Trying",
            180 => "Ringing",
            181 => "Call Is Being Forwarded",
            182 => "Queued",
            183 => "Session Progress",
            200 => "OK",
            202 => "Accepted",
            300 => "Multiple Choices",
            301 => "Moved Permanently",
            302 => "Moved Temporarily",
            400 => "Bad Request",
            401 => "Unauthorized",
            403 => "Forbidden",
            404 => "Not Found",
            405 => "Method Not Allowed",
            406 => "Not Acceptable",
            407 => "Proxy Authentication Required",
            408 => "Request Timeout",
            410 => "Gone",
            413 => "Request Entity Too Large",
            414 => "Request-URI Too Long",
            415 => "Unsupported Media Type",
            416 => "Unsupported URI Scheme",
            420 => "Bad Extension",
            421 => "Extension Required",
            423 => "Interval Too Brief",
            480 => "Temporarily Unavailable",
            481 => "Call/Transaction Does Not Exist",
            482 => "Loop Detected",
            483 => "Too Many Hops",
            484 => "Address Incomplete",
            485 => "Ambiguous",
            486 => "Busy Here",
            487 => "Request Terminated",
            488 => "Not Acceptable Here",
            491 => "Request Pending",
            493 => "Undecipherable",
            500 => "Server Internal Error",
            501 => "Not Implemented",
            502 => "Bad Gateway",
            503 => "Service Unavailable",
            504 => "Server Time-out",
            505 => "Version Not Supported",
            513 => "Message Too Large",
            600 => "Busy Everywhere",
            603 => "Decline",
            604 => "Does Not Exist Anywhere",
            606 => "Not Acceptable",
            _ => match self.class() {
                1 => "Progress",
                2 => "Success",
                3 => "Redirection",
                4 => "Client Error",
                5 => "Server Error",
                _ => "Global Failure",
            },
        }
    }
}

impl fmt::Display for StatusCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}
