//! TwiML parser tests: every verb with defaults and with every attribute set, Twilio
//! documentation-style examples, each error kind, and the bounds that protect the parser.

use std::num::NonZeroU32;
use std::time::Duration;

use router::twiml::{
    self, Client, Dial, Gather, Hangup, HttpMethod, Loop, Noun, Pause, ProgressEvent, Prompt,
    Redirect, Reject, RejectReason, Response, Say, Target, TwimlError, Verb, Warning,
};

/// The parties of a `<Dial>`, without their callbacks.
fn targets(dial: &Dial) -> Vec<Target> {
    dial.nouns.iter().map(|noun| noun.target.clone()).collect()
}

fn parse_ok(xml: &str) -> Response {
    match twiml::parse(xml.as_bytes()) {
        Ok(response) => response,
        Err(error) => panic!("expected {xml:?} to parse, got {error}"),
    }
}

fn only_verb(xml: &str) -> Verb {
    let response = parse_ok(xml);
    match <[Verb; 1]>::try_from(response.verbs) {
        Ok([verb]) => verb,
        Err(verbs) => panic!("expected exactly one verb, got {verbs:?}"),
    }
}

fn parse_err(xml: &str) -> TwimlError {
    match twiml::parse(xml.as_bytes()) {
        Ok(response) => panic!("expected {xml:?} to fail, got {response:?}"),
        Err(error) => error,
    }
}

#[test]
fn say_defaults_and_all_attributes() {
    let Verb::Say(say) = only_verb("<Response><Say>Hello world</Say></Response>") else {
        panic!("not a Say");
    };
    assert_eq!(say.voice, "man");
    assert_eq!(say.language, "en-US");
    assert_eq!(say.loop_count, Loop::ONCE);
    assert_eq!(say.text, "Hello world");

    let Verb::Say(say) = only_verb(
        r#"<Response><Say voice="Polly.Joanna" language="fr-FR" loop="3">
             Bonjour
           </Say></Response>"#,
    ) else {
        panic!("not a Say");
    };
    assert_eq!(
        say,
        Say {
            voice: "Polly.Joanna".into(),
            language: "fr-FR".into(),
            loop_count: only_loop(3),
            text: "Bonjour".into(),
        }
    );
}

fn only_loop(count: u32) -> Loop {
    let Verb::Play(play) = only_verb(&format!(
        r#"<Response><Play loop="{count}">a.wav</Play></Response>"#
    )) else {
        panic!("not a Play");
    };
    assert_eq!(play.loop_count.count(), count);
    play.loop_count
}

#[test]
fn play_defaults_loop_forever_and_relative_url() {
    let Verb::Play(play) =
        only_verb("<Response><Play>https://api.example.com/cowbell.mp3</Play></Response>")
    else {
        panic!("not a Play");
    };
    assert_eq!(play.loop_count, Loop::ONCE);
    assert_eq!(play.url.as_str(), "https://api.example.com/cowbell.mp3");
    assert!(!play.url.is_relative());

    let Verb::Play(play) =
        only_verb(r#"<Response><Play loop="0">/prompts/hold.wav</Play></Response>"#)
    else {
        panic!("not a Play");
    };
    assert!(play.loop_count.is_forever());
    assert!(play.url.is_relative());
    assert_eq!(play.url.as_str(), "/prompts/hold.wav");
}

#[test]
fn pause_default_and_length() {
    assert_eq!(
        only_verb("<Response><Pause/></Response>"),
        Verb::Pause(Pause {
            length: Duration::from_secs(1)
        })
    );
    assert_eq!(
        only_verb(r#"<Response><Pause length="10"></Pause></Response>"#),
        Verb::Pause(Pause {
            length: Duration::from_secs(10)
        })
    );
}

#[test]
fn gather_defaults() {
    let Verb::Gather(gather) = only_verb("<Response><Gather/></Response>") else {
        panic!("not a Gather");
    };
    assert_eq!(
        gather,
        Gather {
            num_digits: None,
            finish_on_key: Some('#'),
            timeout: Duration::from_secs(5),
            action: None,
            method: HttpMethod::Post,
            prompts: vec![],
        }
    );
}

#[test]
fn gather_every_attribute_and_nested_prompts() {
    // Twilio documentation style: a Gather with an action and a nested Say.
    let response = parse_ok(
        r#"<?xml version="1.0" encoding="UTF-8"?>
        <Response>
            <Gather input="dtmf" numDigits="4" finishOnKey="*" timeout="10"
                    action="/process_gather.php" method="GET">
                <Say>Please enter your account number, followed by the star key.</Say>
                <Play loop="2">https://example.com/beep.wav</Play>
                <Pause length="2"/>
            </Gather>
            <Say>We didn't receive any input. Goodbye!</Say>
        </Response>"#,
    );
    let [Verb::Gather(gather), Verb::Say(goodbye)] = response.verbs.as_slice() else {
        panic!("{response:?}");
    };
    assert_eq!(goodbye.text, "We didn't receive any input. Goodbye!");
    assert_eq!(gather.num_digits, NonZeroU32::new(4));
    assert_eq!(gather.finish_on_key, Some('*'));
    assert_eq!(gather.timeout, Duration::from_secs(10));
    assert_eq!(
        gather.action.as_ref().map(|url| url.as_str()),
        Some("/process_gather.php")
    );
    assert_eq!(gather.method, HttpMethod::Get);
    assert_eq!(gather.prompts.len(), 3);
    assert!(matches!(&gather.prompts[0], Prompt::Say(say) if say.text.starts_with("Please enter")));
    assert!(matches!(&gather.prompts[1], Prompt::Play(play) if play.loop_count.count() == 2));
    assert!(
        matches!(&gather.prompts[2], Prompt::Pause(pause) if pause.length == Duration::from_secs(2))
    );
}

#[test]
fn gather_empty_finish_on_key_disables_it() {
    let Verb::Gather(gather) = only_verb(r#"<Response><Gather finishOnKey=""/></Response>"#) else {
        panic!("not a Gather");
    };
    assert_eq!(gather.finish_on_key, None);
}

#[test]
fn gather_refuses_speech_input_and_other_nested_verbs() {
    assert!(matches!(
        parse_err(r#"<Response><Gather input="speech"/></Response>"#),
        TwimlError::UnsupportedGatherInput { value } if value == "speech"
    ));
    assert!(matches!(
        parse_err(r#"<Response><Gather input="dtmf speech"/></Response>"#),
        TwimlError::UnsupportedGatherInput { .. }
    ));
    assert!(matches!(
        parse_err("<Response><Gather><Dial>123</Dial></Gather></Response>"),
        TwimlError::UnexpectedChild { parent, child } if parent == "Gather" && child == "Dial"
    ));
    for (attribute, value) in [
        ("numDigits", "0"),
        ("numDigits", "x"),
        ("finishOnKey", "##"),
        ("finishOnKey", "a"),
        ("timeout", "0"),
        ("timeout", "-1"),
        ("method", "PUT"),
        ("action", "ftp://example.com/x"),
    ] {
        let error = parse_err(&format!(
            r#"<Response><Gather {attribute}="{value}"/></Response>"#
        ));
        assert!(
            matches!(&error, TwimlError::BadAttribute { verb, attribute: a, value: v }
                if verb == "Gather" && a == attribute && v == value),
            "{attribute}={value}: {error}"
        );
    }
}

#[test]
fn dial_defaults_with_bare_number() {
    let Verb::Dial(dial) = only_verb("<Response><Dial>415-123-4567</Dial></Response>") else {
        panic!("not a Dial");
    };
    assert_eq!(
        dial,
        Dial {
            action: None,
            method: HttpMethod::Post,
            timeout: Duration::from_secs(30),
            caller_id: None,
            time_limit: Duration::from_secs(14_400),
            answer_on_bridge: false,
            nouns: vec![Target::Number("4151234567".into()).into()],
        }
    );
}

#[test]
fn dial_two_clients_answer_on_bridge_and_every_attribute() {
    let Verb::Dial(dial) = only_verb(
        r#"<Response>
             <Dial action="https://example.com/dial-done" method="GET" timeout="20"
                   callerId="+15551234567" timeLimit="600" answerOnBridge="true">
               <Client>alice</Client>
               <Client><Identity>bob</Identity></Client>
             </Dial>
           </Response>"#,
    ) else {
        panic!("not a Dial");
    };
    assert_eq!(
        dial.action.as_ref().map(|url| url.as_str()),
        Some("https://example.com/dial-done")
    );
    assert_eq!(dial.method, HttpMethod::Get);
    assert_eq!(dial.timeout, Duration::from_secs(20));
    assert_eq!(dial.caller_id.as_deref(), Some("+15551234567"));
    assert_eq!(dial.time_limit, Duration::from_secs(600));
    assert!(dial.answer_on_bridge);
    assert_eq!(
        targets(&dial),
        vec![
            Target::Client(Client::new("alice")),
            Target::Client(Client::new("bob"))
        ]
    );
}

#[test]
fn dial_client_parameters_in_document_order_per_client() {
    let response = parse_ok(
        r#"<Response><Dial>
             <Client>
               <Identity>alice</Identity>
               <Parameter name="ticket" value="42"/>
               <Parameter name="Agent Note" value=" a &amp; &quot;b&quot; "/>
               <Parameter name="empty" value="" note="ignored"/>
             </Client>
             <Client><Parameter name="zeta" value="1"/><Identity>bob</Identity>
               <Parameter name="alpha" value="2"/></Client>
             <Client>carol<Parameter name="queue" value="sales"/></Client>
             <Client>dave</Client>
           </Dial></Response>"#,
    );
    let [Verb::Dial(dial)] = response.verbs.as_slice() else {
        panic!("not one Dial: {:?}", response.verbs);
    };
    let pairs = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect()
    };
    assert_eq!(
        targets(dial),
        vec![
            Target::Client(Client {
                identity: "alice".into(),
                // Names and values as written: spaces kept, entities resolved, empty allowed.
                parameters: pairs(&[
                    ("ticket", "42"),
                    ("Agent Note", r#" a & "b" "#),
                    ("empty", ""),
                ]),
            }),
            // <Identity> may come after a parameter; document order, not name order.
            Target::Client(Client {
                identity: "bob".into(),
                parameters: pairs(&[("zeta", "1"), ("alpha", "2")]),
            }),
            // The text form takes parameters too (as Twilio's helper libraries write it).
            Target::Client(Client {
                identity: "carol".into(),
                parameters: pairs(&[("queue", "sales")]),
            }),
            Target::Client(Client::new("dave")),
        ]
    );
    assert_eq!(
        response.warnings,
        [Warning::UnknownAttribute {
            element: "Parameter".into(),
            attribute: "note".into(),
        }]
    );
}

#[test]
fn dial_client_parameter_bounds() {
    let dial_client = |children: &str| {
        format!("<Response><Dial><Client><Identity>alice</Identity>{children}</Client></Dial></Response>")
    };
    let parameters = |count: usize| {
        (0..count)
            .map(|index| format!(r#"<Parameter name="p{index}" value="v"/>"#))
            .collect::<String>()
    };
    let parameter =
        |name: &str, value: &str| format!(r#"<Parameter name="{name}" value="{value}"/>"#);
    let parameters_of = |xml: &str| match only_verb(xml) {
        Verb::Dial(dial) => match targets(&dial).as_slice() {
            [Target::Client(client)] => client.parameters.clone(),
            other => panic!("not one client: {other:?}"),
        },
        other => panic!("not a Dial: {other:?}"),
    };

    assert_eq!(Client::MAX_PARAMETERS, 32);
    assert_eq!(parameters_of(&dial_client(&parameters(32))).len(), 32);
    assert!(matches!(
        parse_err(&dial_client(&parameters(33))),
        TwimlError::TooManyParameters { limit: 32 }
    ));

    let longest_name = "n".repeat(Client::MAX_PARAMETER_NAME_BYTES);
    assert_eq!(
        parameters_of(&dial_client(&parameter(&longest_name, "v"))),
        [(longest_name.clone(), "v".to_owned())]
    );
    assert!(matches!(
        parse_err(&dial_client(&parameter(&format!("{longest_name}n"), "v"))),
        TwimlError::ParameterNameTooLong {
            length: 257,
            limit: 256
        }
    ));

    let longest_value = "v".repeat(Client::MAX_PARAMETER_VALUE_BYTES);
    assert_eq!(
        parameters_of(&dial_client(&parameter("n", &longest_value))),
        [("n".to_owned(), longest_value.clone())]
    );
    let error = parse_err(&dial_client(&parameter("n", &format!("{longest_value}v"))));
    assert_eq!(
        error.to_string(),
        r#"<Parameter name="n"> value is 1025 bytes, over the 1024-byte limit"#
    );
    assert!(matches!(
        error,
        TwimlError::ParameterValueTooLong { name, length: 1025, limit: 1024 } if name == "n"
    ));
}

#[test]
fn dial_client_parameter_errors() {
    let dial_client = |children: &str| {
        format!("<Response><Dial><Client><Identity>alice</Identity>{children}</Client></Dial></Response>")
    };
    for missing_name in [
        r#"<Parameter value="42"/>"#,
        r#"<Parameter name="" value="42"/>"#,
        r#"<Parameter name="  " value="42"/>"#,
    ] {
        let error = parse_err(&dial_client(missing_name));
        assert!(
            matches!(error, TwimlError::MissingParameterName),
            "{missing_name}: {error}"
        );
        assert_eq!(
            error.to_string(),
            "<Parameter> needs a non-empty name attribute"
        );
    }
    assert!(matches!(
        parse_err(&dial_client(r#"<Parameter name="ticket"/>"#)),
        TwimlError::MissingParameterValue { name } if name == "ticket"
    ));
    assert!(matches!(
        parse_err(&dial_client(
            r#"<Parameter name="ticket" value="1"/><Parameter name="ticket" value="2"/>"#
        )),
        TwimlError::DuplicateParameter { name } if name == "ticket"
    ));
    // Names are compared as written: these two differ.
    assert!(twiml::parse(
        dial_client(r#"<Parameter name="ticket" value="1"/><Parameter name="Ticket" value="2"/>"#)
            .as_bytes()
    )
    .is_ok());
    assert!(matches!(
        parse_err(&dial_client(r#"<Parameter name="ticket" value="1">text</Parameter>"#)),
        TwimlError::UnexpectedText { element } if element == "Parameter"
    ));
    assert!(matches!(
        parse_err(&dial_client(r#"<Parameter name="ticket" value="1"><Identity>x</Identity></Parameter>"#)),
        TwimlError::UnexpectedChild { parent, child } if parent == "Parameter" && child == "Identity"
    ));
    // Unknown children of <Client> are refused, as before parameters existed.
    assert!(matches!(
        parse_err(&dial_client("<Extension>7</Extension>")),
        TwimlError::UnexpectedChild { parent, child } if parent == "Client" && child == "Extension"
    ));
    // The identity comes from the text or one <Identity>, never both, never two.
    assert!(matches!(
        parse_err(
            r#"<Response><Dial><Client>alice<Identity>bob</Identity><Parameter name="a" value="1"/></Client></Dial></Response>"#
        ),
        TwimlError::UnexpectedText { element } if element == "Client"
    ));
    assert!(matches!(
        parse_err(&dial_client("<Identity>bob</Identity>")),
        TwimlError::UnexpectedChild { parent, child } if parent == "Client" && child == "Identity"
    ));
    assert!(matches!(
        parse_err(r#"<Response><Dial><Client><Parameter name="a" value="1"/></Client></Dial></Response>"#),
        TwimlError::MissingText { element } if element == "Client"
    ));
}

#[test]
fn dial_sip_and_number_nouns() {
    let Verb::Dial(dial) = only_verb(
        "<Response><Dial><Sip>sip:alice@example.com;transport=tcp</Sip>\
         <Number>+44 20 7946 0000</Number><Sip>SIPS:bob@example.com</Sip></Dial></Response>",
    ) else {
        panic!("not a Dial");
    };
    assert_eq!(
        targets(&dial),
        vec![
            Target::Sip("sip:alice@example.com;transport=tcp".into()),
            Target::Number("+442079460000".into()),
            Target::Sip("SIPS:bob@example.com".into()),
        ]
    );
}

#[test]
fn dial_noun_status_callbacks() {
    let response = parse_ok(
        r#"<Response><Dial>
             <Client statusCallback="/client-events" statusCallbackMethod="GET"
                     statusCallbackEvent="  ringing answered
                                            initiated completed answered ">alice</Client>
             <Sip statusCallback="https://example.com/sip">sip:bob@example.com</Sip>
             <Number statusCallbackEvent="ringing" statusCallbackMethod="GET">+15550100</Number>
           </Dial></Response>"#,
    );
    let [Verb::Dial(dial)] = response.verbs.as_slice() else {
        panic!("not one Dial: {:?}", response.verbs);
    };
    let callbacks: Vec<_> = dial
        .nouns
        .iter()
        .map(|noun| {
            noun.status_callback.as_ref().map(|callback| {
                (
                    callback.url.as_str(),
                    callback.method,
                    callback.events.clone(),
                )
            })
        })
        .collect();
    use ProgressEvent::*;
    assert_eq!(
        callbacks,
        [
            // Document order, repeats dropped, any whitespace between names.
            Some((
                "/client-events",
                HttpMethod::Get,
                vec![Ringing, Answered, Initiated, Completed]
            )),
            // Only statusCallback: completed, by POST.
            Some(("https://example.com/sip", HttpMethod::Post, vec![Completed])),
            // No statusCallback: nothing to report to.
            None,
        ]
    );
    assert_eq!(
        response.warnings,
        ["statusCallbackEvent", "statusCallbackMethod"].map(|attribute| {
            Warning::UnusedAttribute {
                element: "Number".into(),
                attribute: attribute.into(),
                missing: "statusCallback",
            }
        })
    );
    assert_eq!(
        response.warnings[0].to_string(),
        "ignored attribute statusCallbackEvent on <Number>: it needs statusCallback"
    );
    // Other noun attributes stay outside the contract: warned about, not refused.
    let response =
        parse_ok(r#"<Response><Dial><Number sendDigits="1">123</Number></Dial></Response>"#);
    assert_eq!(
        response.warnings,
        [Warning::UnknownAttribute {
            element: "Number".into(),
            attribute: "sendDigits".into(),
        }]
    );
    let Verb::Dial(dial) = &response.verbs[0] else {
        panic!()
    };
    assert_eq!(
        dial.nouns,
        [Noun {
            target: Target::Number("123".into()),
            status_callback: None,
        }]
    );

    for (attribute, value) in [
        ("statusCallback", "ftp://example.com/x"),
        ("statusCallback", ""),
        ("statusCallbackEvent", "initiated hangup"),
        ("statusCallbackEvent", "Completed"),
        ("statusCallbackEvent", "initiated,completed"),
        ("statusCallbackEvent", "  "),
        ("statusCallbackMethod", "PUT"),
    ] {
        let xml = format!(
            r#"<Response><Dial><Sip statusCallback="/s" {attribute}="{value}">sip:b@x</Sip></Dial></Response>"#
        )
        .replace(r#"statusCallback="/s" statusCallback="#, "statusCallback=");
        assert!(
            matches!(
                parse_err(&xml),
                TwimlError::BadAttribute { verb, attribute: bad, value: v }
                    if verb == "Sip" && bad == attribute && v == value
            ),
            "{xml}"
        );
    }
}

#[test]
fn dial_errors() {
    assert!(matches!(
        parse_err("<Response><Dial/></Response>"),
        TwimlError::MissingText { element } if element == "Dial"
    ));
    assert!(matches!(
        parse_err("<Response><Dial>call me</Dial></Response>"),
        TwimlError::BadText { element, value } if element == "Dial" && value == "call me"
    ));
    assert!(matches!(
        parse_err("<Response><Dial><Sip>http://x</Sip></Dial></Response>"),
        TwimlError::BadText { element, .. } if element == "Sip"
    ));
    assert!(matches!(
        parse_err("<Response><Dial><Client>  </Client></Dial></Response>"),
        TwimlError::MissingText { element } if element == "Client"
    ));
    assert!(matches!(
        parse_err("<Response><Dial><Client>a b</Client></Dial></Response>"),
        TwimlError::BadText { element, .. } if element == "Client"
    ));
    assert!(matches!(
        parse_err("<Response><Dial><Queue>support</Queue></Dial></Response>"),
        TwimlError::UnexpectedChild { parent, child } if parent == "Dial" && child == "Queue"
    ));
    assert!(matches!(
        parse_err("<Response><Dial>123<Client>alice</Client></Dial></Response>"),
        TwimlError::UnexpectedText { element } if element == "Dial"
    ));
    let eleven = "<Client>a</Client>".repeat(11);
    assert!(matches!(
        parse_err(&format!("<Response><Dial>{eleven}</Dial></Response>")),
        TwimlError::TooManyNouns { limit: 10 }
    ));
    let ten = "<Client>a</Client>".repeat(10);
    assert!(matches!(
        only_verb(&format!("<Response><Dial>{ten}</Dial></Response>")),
        Verb::Dial(dial) if dial.nouns.len() == 10
    ));
    for (attribute, value) in [
        ("timeout", "601"),
        ("timeLimit", "0"),
        ("answerOnBridge", "yes"),
        ("callerId", ""),
        ("method", "get-ish"),
    ] {
        let error = parse_err(&format!(
            r#"<Response><Dial {attribute}="{value}">123</Dial></Response>"#
        ));
        assert!(
            matches!(&error, TwimlError::BadAttribute { verb, attribute: a, .. }
                if verb == "Dial" && a == attribute),
            "{attribute}={value}: {error}"
        );
    }
}

#[test]
fn redirect_hangup_reject() {
    assert_eq!(
        parse_ok(
            r#"<Response><Redirect>../next</Redirect><Redirect method="GET">http://e.com/x</Redirect>
               <Hangup/><Reject/><Reject reason="busy"></Reject></Response>"#
        )
        .verbs
        .iter()
        .map(|verb| match verb {
            Verb::Redirect(Redirect { method, url }) => format!("redirect {method:?} {url}"),
            Verb::Hangup(Hangup) => "hangup".to_owned(),
            Verb::Reject(Reject { reason }) => format!("reject {reason:?}"),
            other => format!("{other:?}"),
        })
        .collect::<Vec<_>>(),
        [
            "redirect Post ../next",
            "redirect Get http://e.com/x",
            "hangup",
            "reject Rejected",
            "reject Busy",
        ]
    );
    assert!(matches!(
        parse_err(r#"<Response><Reject reason="later"/></Response>"#),
        TwimlError::BadAttribute { verb, attribute, value }
            if verb == "Reject" && attribute == "reason" && value == "later"
    ));
    assert!(matches!(
        parse_err("<Response><Redirect/></Response>"),
        TwimlError::MissingText { element } if element == "Redirect"
    ));
    assert!(matches!(
        parse_err("<Response><Hangup>now</Hangup></Response>"),
        TwimlError::UnexpectedText { element } if element == "Hangup"
    ));
    assert_eq!(RejectReason::default(), RejectReason::Rejected);
}

#[test]
fn unknown_attributes_are_ignored_with_warnings() {
    let response = parse_ok(
        r#"<Response lang="x"><Play digits="wwww3">a.wav</Play>
           <Dial record="true"><Number sendDigits="1">123</Number></Dial></Response>"#,
    );
    assert_eq!(response.verbs.len(), 2);
    assert_eq!(
        response.warnings,
        [
            ("Response", "lang"),
            ("Play", "digits"),
            ("Dial", "record"),
            ("Number", "sendDigits")
        ]
        .map(|(element, attribute)| Warning::UnknownAttribute {
            element: element.into(),
            attribute: attribute.into(),
        })
    );
    assert_eq!(
        response.warnings[1].to_string(),
        "ignored unknown attribute digits on <Play>"
    );
}

#[test]
fn structural_errors() {
    assert!(matches!(
        parse_err("<Response><Speak>hi</Speak></Response>"),
        TwimlError::UnknownVerb { name } if name == "Speak"
    ));
    // Names are case-sensitive, as in Twilio.
    assert!(matches!(
        parse_err("<Response><say>hi</say></Response>"),
        TwimlError::UnknownVerb { name } if name == "say"
    ));
    assert!(matches!(
        parse_err("<Document><Say>hi</Say></Document>"),
        TwimlError::BadRoot { name } if name == "Document"
    ));
    assert!(matches!(parse_err(""), TwimlError::Empty));
    assert!(matches!(
        parse_err("  <!-- nothing -->  "),
        TwimlError::Empty
    ));
    assert!(matches!(
        parse_err("<Response><Say>hi</Response>"),
        TwimlError::Malformed { .. }
    ));
    assert!(matches!(
        parse_err("<Response><Say>hi</Say>"),
        TwimlError::Unclosed { name } if name == "Response"
    ));
    assert!(matches!(
        parse_err("<Response/><Response/>"),
        TwimlError::TrailingContent
    ));
    assert!(matches!(
        parse_err("<Response/>trailing"),
        TwimlError::TrailingContent
    ));
    assert!(matches!(
        parse_err("<Response>Hello<Hangup/></Response>"),
        TwimlError::UnexpectedText { element } if element == "Response"
    ));
    assert!(matches!(
        parse_err(r#"<Response><Say loop="x">hi</Say></Response>"#),
        TwimlError::BadAttribute { verb, attribute, .. } if verb == "Say" && attribute == "loop"
    ));
    assert!(matches!(
        parse_err(r#"<Response><Say voice="a b">hi</Say></Response>"#),
        TwimlError::BadAttribute { attribute, .. } if attribute == "voice"
    ));
    assert!(matches!(
        parse_err("<Response><Play>mailto:x@example.com</Play></Response>"),
        TwimlError::BadText { element, .. } if element == "Play"
    ));
    assert!(matches!(
        parse_err("<Response><Say><break/>hi</Say></Response>"),
        TwimlError::UnexpectedChild { parent, child } if parent == "Say" && child == "break"
    ));
    // Not UTF-8.
    assert!(matches!(
        twiml::parse(b"<Response><Say>\xff\xfe</Say></Response>"),
        Err(TwimlError::Malformed { .. })
    ));
}

#[test]
fn doctype_and_entity_bomb_are_rejected() {
    let bomb = r#"<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
]>
<Response><Say>&lol3;</Say></Response>"#;
    assert!(matches!(parse_err(bomb), TwimlError::DocumentType));
    let external = r#"<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><Response><Say>&x;</Say></Response>"#;
    assert!(matches!(parse_err(external), TwimlError::DocumentType));
    // Without a DTD an undeclared entity is an error, never expanded or passed through.
    assert!(matches!(
        parse_err("<Response><Say>&lol;</Say></Response>"),
        TwimlError::UnknownEntity { name } if name == "lol"
    ));
}

#[test]
fn builtin_entities_cdata_comments_and_whitespace() {
    let response = parse_ok(
        "<?xml version=\"1.0\"?>\n<!-- greeting -->\n<Response>\n  <!-- first -->\n  \
         <Say>Fish &amp; chips &lt;3 &#65;&#x42; <!-- inner --> <![CDATA[<b>bold</b> & raw]]></Say>\n\
         <?processing instruction?>\n  <Play>https://e.com/a.wav?x=1&amp;y=2</Play>\n</Response>\n<!-- after -->\n",
    );
    let [Verb::Say(say), Verb::Play(play)] = response.verbs.as_slice() else {
        panic!("{response:?}");
    };
    assert_eq!(say.text, "Fish & chips <3 AB  <b>bold</b> & raw");
    assert_eq!(play.url.as_str(), "https://e.com/a.wav?x=1&y=2");
    let Verb::Play(play) =
        only_verb(r#"<Response><Play>  <![CDATA[/prompt.wav]]>  </Play></Response>"#)
    else {
        panic!("not a Play");
    };
    assert_eq!(play.url.as_str(), "/prompt.wav");
    assert!(parse_ok("<Response>\n\t \n</Response>").verbs.is_empty());
    let Verb::Redirect(redirect) =
        only_verb(r#"<Response><Redirect method="get">/x?a=&quot;b&quot;</Redirect></Response>"#)
    else {
        panic!("not a Redirect");
    };
    assert_eq!(redirect.method, HttpMethod::Get);
    assert_eq!(redirect.url.as_str(), "/x?a=\"b\"");
}

#[test]
fn size_bound_is_checked_before_parsing() {
    // Not even well-formed: the size check must come first.
    let huge = vec![b'<'; twiml::MAX_DOCUMENT_BYTES + 1];
    assert!(matches!(
        twiml::parse(&huge),
        Err(TwimlError::TooLarge { size, limit }) if size == huge.len() && limit == twiml::MAX_DOCUMENT_BYTES
    ));
    let padding = " ".repeat(twiml::MAX_DOCUMENT_BYTES - "<Response><Hangup/></Response>".len());
    assert_eq!(
        parse_ok(&format!("<Response><Hangup/></Response>{padding}")).verbs,
        [Verb::Hangup(Hangup)]
    );
}

#[test]
fn depth_bound() {
    let depth = twiml::MAX_DEPTH + 1;
    let xml = format!("{}{}", "<a>".repeat(depth), "</a>".repeat(depth));
    assert!(matches!(parse_err(&xml), TwimlError::TooDeep { limit } if limit == twiml::MAX_DEPTH));
    // Exactly at the bound the tree is read; the error is then about the content.
    let depth = twiml::MAX_DEPTH;
    let xml = format!(
        "<Response>{}{}</Response>",
        "<a>".repeat(depth - 1),
        "</a>".repeat(depth - 1)
    );
    assert!(matches!(parse_err(&xml), TwimlError::UnknownVerb { name } if name == "a"));
}

#[test]
fn verb_and_text_bounds() {
    let at_limit = "<Pause/>".repeat(twiml::MAX_VERBS);
    assert_eq!(
        parse_ok(&format!("<Response>{at_limit}</Response>"))
            .verbs
            .len(),
        twiml::MAX_VERBS
    );
    let over = "<Pause/>".repeat(twiml::MAX_VERBS + 1);
    assert!(matches!(
        parse_err(&format!("<Response>{over}</Response>")),
        TwimlError::TooManyVerbs { limit } if limit == twiml::MAX_VERBS
    ));
    // Verbs nested in <Gather> count too.
    let nested = "<Pause/>".repeat(twiml::MAX_VERBS);
    assert!(matches!(
        parse_err(&format!("<Response><Gather>{nested}</Gather></Response>")),
        TwimlError::TooManyVerbs { .. }
    ));
    let long = "a".repeat(twiml::MAX_TEXT_BYTES + 1);
    assert!(matches!(
        parse_err(&format!("<Response><Say>{long}</Say></Response>")),
        TwimlError::TextTooLong { element, .. } if element == "Say"
    ));
    assert!(matches!(
        parse_err(&format!(
            r#"<Response><Say voice="{long}">x</Say></Response>"#
        )),
        TwimlError::TextTooLong { .. }
    ));
    let exact = "a".repeat(twiml::MAX_TEXT_BYTES);
    assert!(matches!(
        only_verb(&format!("<Response><Say>{exact}</Say></Response>")),
        Verb::Say(say) if say.text.len() == twiml::MAX_TEXT_BYTES
    ));
}

#[test]
fn errors_display_the_culprit() {
    let error = parse_err(r#"<Response><Pause length="forever"/></Response>"#);
    assert_eq!(
        error.to_string(),
        r#"<Pause> attribute length="forever" is invalid"#
    );
    assert_eq!(
        parse_err("<Response><Conference/></Response>").to_string(),
        "unknown TwiML verb <Conference>"
    );
}

#[test]
fn play_requires_a_url() {
    assert!(matches!(
        parse_err("<Response><Play/></Response>"),
        TwimlError::MissingText { element } if element == "Play"
    ));
    let error = parse_err(r#"<Response><Play loop="1001">a.wav</Play></Response>"#);
    assert!(matches!(error, TwimlError::BadAttribute { attribute, .. } if attribute == "loop"));
}
