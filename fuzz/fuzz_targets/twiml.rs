//! Fuzz target: one document through `router::twiml::parse`. It must never panic, must give the
//! same answer twice (no hidden state), and whatever parses must respect the parser's documented
//! bounds (verbs counting those nested in `<Gather>`, text length); an error must render as text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use router::twiml::{self, Prompt, Verb, MAX_TEXT_BYTES, MAX_VERBS};

fuzz_target!(|data: &[u8]| {
    let result = twiml::parse(data);
    match (&result, &twiml::parse(data)) {
        (Ok(first), Ok(second)) => assert_eq!(first, second, "parse is not deterministic"),
        (Err(first), Err(second)) => assert_eq!(first.to_string(), second.to_string()),
        _ => panic!("parse is not deterministic"),
    }
    let Ok(response) = result else {
        return;
    };
    let mut verbs = response.verbs.len();
    let mut texts = Vec::new();
    for verb in &response.verbs {
        match verb {
            Verb::Say(say) => texts.push(say.text.len()),
            Verb::Gather(gather) => {
                verbs += gather.prompts.len();
                for prompt in &gather.prompts {
                    if let Prompt::Say(say) = prompt {
                        texts.push(say.text.len());
                    }
                }
            }
            _ => {}
        }
    }
    assert!(verbs <= MAX_VERBS, "{verbs} verbs");
    assert!(texts.iter().all(|&length| length <= MAX_TEXT_BYTES), "text over the bound");
});
