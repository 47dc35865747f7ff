use super::*;
use crate::util::{base64_decode, base64_encode};

use crate::dialect::{JSON, SSE};
use crate::ollama::Decoder;
use http::Method;
use serde_json::json;

fn config() -> Config {
    Config::default()
}

fn parse(config: &Config, body: Value) -> Result<Parsed, ApiError> {
    parse_request(config, body.to_string().as_bytes())
}

fn native_json(config: &Config, body: Value) -> Value {
    let parsed = parse(config, body).unwrap();
    crate::dialect::native::finished(config, parsed.native)
}

// ---------------------------------------------------------------- requests

#[test]
fn instructions_and_string_input() {
    let c = config();
    let v = native_json(
        &c,
        json!({"model":"qwen3","instructions":"Be brief.","input":"Hi","max_output_tokens":50,"temperature":0.2}),
    );
    assert_eq!(
        v["messages"],
        json!([{"role":"system","content":"Be brief."},{"role":"user","content":"Hi"}])
    );
    assert_eq!(v["options"], json!({"num_predict":50,"temperature":0.2}));
    assert_eq!(v["stream"], false);
    assert!(v.get("think").is_none(), "no effort, no think-model: unset");
    assert!(v.get("tools").is_none());
}

#[test]
fn message_items_and_parts() {
    let c = config();
    let v = native_json(
        &c,
        json!({"model":"m","stream":true,"input":[
            {"type":"message","role":"developer","content":"Rules."},
            {"role":"system","content":[{"type":"input_text","text":"More rules."}]},
            {"type":"message","role":"user","content":[
                {"type":"input_text","text":"Look:"},
                {"type":"input_image","image_url":"data:image/png;base64,iVBORw0KGgo="},
                {"type":"some_future_part","x":1}
            ]},
            {"type":"message","role":"assistant","content":[
                {"type":"output_text","text":"A cat.","annotations":[]},
                {"type":"refusal","refusal":"No more."}
            ]}
        ]}),
    );
    assert_eq!(
        v["messages"],
        json!([
            {"role":"system","content":"Rules."},
            {"role":"system","content":"More rules."},
            {"role":"user","content":"Look:","images":["iVBORw0KGgo="]},
            {"role":"assistant","content":"A cat.\nNo more."}
        ])
    );
    assert_eq!(v["stream"], true);
}

#[test]
fn bad_parts_and_items_name_the_param() {
    let c = config();
    let e = parse(
        &c,
        json!({"model":"m","input":[{"role":"user","content":[{"type":"input_image","image_url":"https://x.test/a.png"}]}]}),
    )
    .err()
    .unwrap();
    assert_eq!(e.param.as_deref(), Some("input[0].content[0].image_url"));
    let e = parse(
        &c,
        json!({"model":"m","input":[{"role":"user","content":"a"},{"role":"user","content":[{"type":"input_file","file_id":"f"}]}]}),
    )
    .err()
    .unwrap();
    assert_eq!(e.param.as_deref(), Some("input[1].content[0]"));
    let e = parse(
        &c,
        json!({"model":"m","input":[{"role":"robot","content":"a"}]}),
    )
    .err()
    .unwrap();
    assert_eq!(e.param.as_deref(), Some("input[0].role"));
    let e = parse(&c, json!({"model":"m","input":[]})).err().unwrap();
    assert_eq!(e.param.as_deref(), Some("input"));
    let e = parse(&c, json!({"input":"x"})).err().unwrap();
    assert_eq!(e.param.as_deref(), Some("model"));
}

#[test]
fn function_calls_merge_and_outputs_find_their_tool() {
    let c = config();
    let v = native_json(
        &c,
        json!({"model":"m","input":[
            {"role":"user","content":"Weather in Tokyo and Paris?"},
            {"type":"message","role":"assistant","content":[{"type":"output_text","text":"Checking."}]},
            {"type":"function_call","call_id":"call_a","name":"get_weather","arguments":"{\"city\":\"Tokyo\"}"},
            {"type":"function_call","call_id":"call_b","name":"get_weather","arguments":""},
            {"type":"function_call_output","call_id":"call_a","output":"sunny"},
            {"type":"function_call_output","call_id":"call_b","output":[{"type":"input_text","text":"rainy"}]},
            {"type":"function_call_output","call_id":"call_zzz","output":{"ok":true}}
        ]}),
    );
    assert_eq!(
        v["messages"],
        json!([
            {"role":"user","content":"Weather in Tokyo and Paris?"},
            {"role":"assistant","content":"Checking.","tool_calls":[
                {"id":"call_a","function":{"name":"get_weather","arguments":{"city":"Tokyo"}}},
                {"id":"call_b","function":{"name":"get_weather","arguments":{}}}
            ]},
            {"role":"tool","content":"sunny","tool_name":"get_weather","tool_call_id":"call_a"},
            {"role":"tool","content":"rainy","tool_name":"get_weather","tool_call_id":"call_b"},
            {"role":"tool","content":"{\"ok\":true}","tool_call_id":"call_zzz"}
        ])
    );
}

#[test]
fn function_call_after_a_tool_output_starts_a_new_turn() {
    let c = config();
    let v = native_json(
        &c,
        json!({"model":"m","input":[
            {"role":"user","content":"go"},
            {"type":"function_call","call_id":"c1","name":"f","arguments":"{}"},
            {"type":"function_call_output","call_id":"c1","output":"1"},
            {"type":"function_call","call_id":"c2","name":"g","arguments":"{}","namespace":"mcp__tools__"}
        ]}),
    );
    let m = v["messages"].as_array().unwrap();
    assert_eq!(m.len(), 4);
    assert_eq!(m[1]["content"], "");
    assert_eq!(m[3]["role"], "assistant");
    assert_eq!(m[3]["tool_calls"][0]["function"]["name"], "mcp__tools__g");
}

#[test]
fn invalid_arguments_name_the_item() {
    let c = config();
    let e = parse(
        &c,
        json!({"model":"m","input":[{"role":"user","content":"x"},{"type":"function_call","call_id":"c","name":"f","arguments":"{oops"}]}),
    )
    .err()
    .unwrap();
    assert_eq!(e.status, 400);
    assert_eq!(e.param.as_deref(), Some("input[1].arguments"));
    assert!(e.message.contains("not valid JSON"));
}

#[test]
fn web_search_calls_come_back_as_the_call_and_what_is_left_of_its_results() {
    let c = config();
    let v = native_json(
        &c,
        json!({"model":"m","input":[
            {"role":"user","content":"news?"},
            {"type":"web_search_call","id":"ws_1","status":"completed","action":{"type":"search","query":"rust 2026",
             "sources":[{"type":"url","url":"https://blog.rust-lang.org/"}]}},
            {"type":"web_search_call","id":"ws_2","status":"completed","action":{"type":"search","query":"tokio"}},
            {"type":"web_search_call","id":"ws_3","status":"failed","action":{"type":"search","query":"x"}},
            {"role":"assistant","content":"Here."}
        ]}),
    );
    let m = &v["messages"];
    assert_eq!(m[1]["role"], "assistant");
    assert_eq!(
        m[1]["tool_calls"][0],
        json!({"id":"ws_1","function":{"name":"web_search","arguments":{"query":"rust 2026"}}})
    );
    assert_eq!(m[2]["role"], "tool");
    assert_eq!(m[2]["tool_call_id"], "ws_1");
    assert!(m[2]["content"]
        .as_str()
        .unwrap()
        .contains("URL: https://blog.rust-lang.org/"));
    assert_eq!(
        m[3]["tool_calls"][0]["function"]["arguments"]["query"],
        "tokio"
    );
    assert!(m[4]["content"].as_str().unwrap().contains("not kept"));
    assert!(m[6]["content"]
        .as_str()
        .unwrap()
        .contains("failed (unavailable)"));
    assert_eq!(m[7], json!({"role":"assistant","content":"Here."}));
}

#[test]
fn other_item_types_are_dropped() {
    let c = config();
    let v = native_json(
        &c,
        json!({"model":"m","input":[
            {"type":"item_reference","id":"msg_1"},
            {"type":"local_shell_call","call_id":"c","status":"completed","action":{"type":"exec","command":["ls"]}},
            {"role":"user","content":"hello"}
        ]}),
    );
    assert_eq!(v["messages"], json!([{"role":"user","content":"hello"}]));
}

#[test]
fn unknown_item_types_are_refused_by_name() {
    let c = config();
    let e = parse(
        &c,
        json!({"model":"m","input":[{"role":"user","content":"hi"},{"type":"bogus","id":"x"}]}),
    )
    .err()
    .unwrap();
    assert_eq!(e.status, 400);
    assert_eq!(e.param.as_deref(), Some("input[1].type"));
    assert_eq!(
        e.message,
        "input[1].type is \"bogus\", which is not an input item type of the Responses API"
    );
    // Alone, it used to be reported as a missing input.
    let e = parse(&c, json!({"model":"m","input":[{"type":"bogus"}]}))
        .err()
        .unwrap();
    assert_eq!(e.param.as_deref(), Some("input[0].type"));
}

#[test]
fn an_input_of_dropped_items_only_says_so() {
    let c = config();
    let e = parse(
        &c,
        json!({"model":"m","instructions":"be brief","input":[{"type":"item_reference","id":"msg_1"},{"type":"web_search_call","id":"ws"}]}),
    )
    .err()
    .unwrap();
    assert_eq!(e.param.as_deref(), Some("input"));
    assert_eq!(
        e.message,
        "input has nothing Ollama can answer: this proxy drops input[0] (type item_reference); send at least one message item"
    );
    // With nothing dropped, the old message.
    let e = parse(&c, json!({"model":"m","input":[]})).err().unwrap();
    assert!(e.message.starts_with("input is required"), "{}", e.message);
}

#[test]
fn include_and_tool_outputs_are_typed() {
    let c = config();
    for (body, param, message) in [
        (
            json!({"model":"m","input":"hi","include":"reasoning.encrypted_content"}),
            "include",
            "include must be an array of strings, got a string",
        ),
        (
            json!({"model":"m","input":"hi","include":["reasoning.encrypted_content", 3]}),
            "include[1]",
            "include[1] must be a string, got a number",
        ),
        (
            json!({"model":"m","input":[{"role":"user","content":"x"},
                {"type":"function_call","call_id":"c","name":"f","arguments":"{}"},
                {"type":"function_call_output","call_id":"c","output":42}]}),
            "input[2].output",
            "input[2].output must be a string or an array of content parts, got a number",
        ),
        (
            json!({"model":"m","input":[{"type":"function_call_output","call_id":"c","output":true}]}),
            "input[0].output",
            "input[0].output must be a string or an array of content parts, got a boolean",
        ),
    ] {
        let e = parse(&c, body.clone())
            .err()
            .unwrap_or_else(|| panic!("accepted {body}"));
        assert_eq!(e.status, 400);
        assert_eq!(
            (e.param.as_deref(), e.message.as_str()),
            (Some(param), message)
        );
    }
    let p = parse(
        &c,
        json!({"model":"m","input":"hi","include":["message.output_text.logprobs"]}),
    )
    .unwrap();
    assert!(!p.include_encrypted);
    let p = parse(&c, json!({"model":"m","input":"hi","include":null})).unwrap();
    assert!(!p.include_encrypted);
}

#[test]
fn tools_flatten_namespaces_and_drop_other_kinds() {
    let c = config();
    let parsed = parse(
        &c,
        json!({"model":"m","input":"x","tool_choice":"auto","parallel_tool_calls":true,"tools":[
            {"type":"function","name":"exec_command","description":"Run","strict":false,
             "parameters":{"type":"object","properties":{"cmd":{"type":"string"}},"required":["cmd"]}},
            {"type":"namespace","name":"mcp__calendar__","description":"Calendar","tools":[
                {"type":"function","name":"create_event","parameters":{"type":"object","properties":{}}},
                {"type":"file_search","vector_store_ids":[]}
            ]},
            {"type":"web_search","external_web_access":false},
            {"type":"mcp","server_label":"x"},
            {"type":"local_shell"}
        ]}),
    )
    .unwrap();
    assert_eq!(
        parsed.native.tools.clone().unwrap(),
        vec![
            json!({"type":"function","function":{"name":"exec_command","description":"Run",
                "parameters":{"type":"object","properties":{"cmd":{"type":"string"}},"required":["cmd"]}}}),
            json!({"type":"function","function":{"name":"mcp__calendar__create_event",
                "parameters":{"type":"object","properties":{}}}}),
            crate::search::function(None),
        ]
    );
    assert_eq!(parsed.search, Some(crate::search::SearchTool::default()));
    assert_eq!(
        parsed.namespaced.get("mcp__calendar__create_event"),
        Some(&("mcp__calendar__".to_string(), "create_event".to_string()))
    );
    assert_eq!(flat_name("crm", "lookup"), "crm__lookup");

    let none = parse(
        &c,
        json!({"model":"m","input":"x","tool_choice":"none","tools":[{"type":"function","name":"f"}]}),
    )
    .unwrap();
    assert!(none.native.tools.is_none());
}

/// Codex's tools with a client-run tool search, and deferred functions.
fn tool_search_body(input: Value) -> Value {
    json!({"model":"m","input":input,"tools":[
        {"type":"function","name":"exec_command","parameters":{"type":"object"}},
        {"type":"tool_search","execution":"client","description":"Search deferred tools.",
         "parameters":{"type":"object","properties":{"query":{"type":"string"},"limit":{"type":"number"}},"required":["query"]}},
        {"type":"function","name":"late","defer_loading":true,"parameters":{"type":"object"}},
        {"type":"namespace","name":"mcp__docs__","description":"Docs","tools":[
            {"type":"function","name":"search","defer_loading":true,"parameters":{"type":"object"}}]}
    ]})
}

fn offered(p: &Parsed) -> Vec<&str> {
    p.native
        .tools
        .iter()
        .flatten()
        .filter_map(|t| t.pointer("/function/name").and_then(Value::as_str))
        .collect()
}

#[test]
fn client_tool_search_is_a_function_and_deferred_tools_wait() {
    let c = config();
    let first = parse(&c, tool_search_body(json!("find the docs tool"))).unwrap();
    assert!(first.tool_search);
    assert_eq!(offered(&first), ["exec_command", "tool_search"]);
    assert_eq!(
        first.native.tools.as_ref().unwrap()[1],
        json!({"type":"function","function":{"name":"tool_search","description":"Search deferred tools.",
            "parameters":{"type":"object","properties":{"query":{"type":"string"},"limit":{"type":"number"}},"required":["query"]}}})
    );
    assert!(first.namespaced.is_empty());
    let mut swapped = tool_search_body(json!("x"));
    swapped["tools"].as_array_mut().unwrap().swap(0, 1);
    assert_eq!(
        offered(&parse(&c, swapped).unwrap()),
        ["tool_search", "exec_command"],
        "the request's order"
    );

    // The search and its output, sent back: the call, one line per tool
    // loaded, and the loaded tools callable (flattened, not twice).
    let next = parse(
        &c,
        tool_search_body(json!([
            {"role":"user","content":"find the docs tool"},
            {"type":"tool_search_call","id":"tsc_1","call_id":"ts1","status":"completed","execution":"client",
             "arguments":{"query":"docs","limit":2}},
            {"type":"tool_search_output","call_id":"ts1","status":"completed","execution":"client","tools":[
                {"type":"namespace","name":"mcp__docs__","description":"Docs","tools":[
                    {"type":"function","name":"search","description":"Search the docs.\nLong details.",
                     "defer_loading":true,"parameters":{"type":"object","properties":{"q":{"type":"string"}}}}]},
                {"type":"function","name":"exec_command","parameters":{"type":"object"}}
            ]}
        ])),
    )
    .unwrap();
    assert_eq!(
        offered(&next),
        ["exec_command", "tool_search", "mcp__docs__search"]
    );
    assert_eq!(
        next.namespaced.get("mcp__docs__search"),
        Some(&("mcp__docs__".to_string(), "search".to_string()))
    );
    let v = crate::dialect::native::finished(&c, next.native);
    assert_eq!(
        v["messages"],
        json!([
            {"role":"user","content":"find the docs tool"},
            {"role":"assistant","content":"","tool_calls":[
                {"id":"ts1","function":{"name":"tool_search","arguments":{"query":"docs","limit":2}}}]},
            {"role":"tool","tool_name":"tool_search","tool_call_id":"ts1","content":
                "Tool \"mcp__docs__search\" is now available: Search the docs.\nTool \"exec_command\" is now available."}
        ])
    );

    // tool_choice none: nothing offered, loaded or not.
    let mut body = tool_search_body(json!([
        {"role":"user","content":"x"},
        {"type":"tool_search_output","call_id":"ts1","tools":[{"type":"function","name":"late"}]}
    ]));
    body["tool_choice"] = json!("none");
    assert!(parse(&c, body).unwrap().native.tools.is_none());

    // An output with no tools still answers the call.
    let v = native_json(
        &c,
        tool_search_body(json!([
            {"role":"user","content":"x"},
            {"type":"tool_search_call","call_id":"ts1","arguments":"{\"query\":\"nothing\"}"},
            {"type":"tool_search_output","call_id":"ts1","tools":[]}
        ])),
    );
    assert_eq!(
        v["messages"][1]["tool_calls"][0]["function"]["arguments"],
        json!({"query":"nothing"})
    );
    assert_eq!(
        v["messages"][2]["content"],
        "The tool search found no tools."
    );

    let e = parse(
        &c,
        tool_search_body(json!([
            {"role":"user","content":"x"},
            {"type":"tool_search_output","call_id":"ts1","tools":{"name":"late"}}
        ])),
    )
    .err()
    .unwrap();
    assert_eq!(e.param.as_deref(), Some("input[1].tools"));
}

#[test]
fn without_a_client_search_deferred_tools_are_offered() {
    let c = config();
    for search in [
        json!({"type":"tool_search"}),
        json!({"type":"tool_search","execution":"server"}),
        json!({"type":"local_shell"}),
    ] {
        let mut body = tool_search_body(json!("hi"));
        body["tools"][1] = search.clone();
        let p = parse(&c, body).unwrap();
        assert!(!p.tool_search, "{search}");
        assert_eq!(
            offered(&p),
            ["exec_command", "late", "mcp__docs__search"],
            "{search}"
        );
    }
}

/// Codex 0.169's `apply_patch`, as it offers it to the GPT-5 family.
fn apply_patch_tool() -> Value {
    json!({"type":"custom","name":"apply_patch",
        "description":"The `apply_patch` tool can be used to edit files. This is a FREEFORM tool, so do not wrap the patch in JSON.",
        "format":{"type":"grammar","syntax":"lark",
            "definition":"start: begin_patch hunk+ end_patch\nbegin_patch: \"*** Begin Patch\" LF\nend_patch: \"*** End Patch\" LF?\n"}})
}

/// The parameters every custom tool's function has.
fn custom_parameters() -> Value {
    json!({"type":"object","properties":{"input":{"type":"string","description":"The tool's whole input text."}},
        "required":["input"]})
}

#[test]
fn custom_tools_are_functions_of_one_string() {
    let c = config();
    let p = parse(
        &c,
        json!({"model":"m","input":"x","tools":[
            apply_patch_tool(),
            {"type":"custom","name":"note","description":"Keep a note.","format":{"type":"text"}},
            {"type":"custom","name":"bare"},
            {"type":"custom","name":"digits","format":{"type":"grammar","syntax":"regex","definition":"^[0-9]+$"}},
            {"type":"namespace","name":"functions","description":"","tools":[
                {"type":"custom","name":"exec","description":"Run JavaScript.",
                 "format":{"type":"grammar","syntax":"lark","definition":"start: SOURCE\nSOURCE: /[\\s\\S]+/\n"}},
                {"type":"function","name":"wait","parameters":{"type":"object","properties":{}}}
            ]}
        ]}),
    )
    .unwrap();
    assert_eq!(
        offered(&p),
        [
            "apply_patch",
            "note",
            "bare",
            "digits",
            "functions__exec",
            "functions__wait"
        ]
    );
    let tools = p.native.tools.as_ref().unwrap();
    for t in &tools[..5] {
        assert_eq!(t["type"], "function");
        assert_eq!(t["function"]["parameters"], custom_parameters(), "{t}");
    }
    let description = |i: usize| tools[i]["function"]["description"].as_str().unwrap();
    assert_eq!(
        description(0),
        "The `apply_patch` tool can be used to edit files. This is a FREEFORM tool, so do not wrap the patch in JSON.\n\n\
         This tool takes free-form text, not JSON arguments. Call it with one argument, `input`: \
         a string holding the whole text, exactly as the tool reads it.\n\
         The text must follow this lark grammar:\n\
         start: begin_patch hunk+ end_patch\nbegin_patch: \"*** Begin Patch\" LF\nend_patch: \"*** End Patch\" LF?"
    );
    assert!(description(1).starts_with("Keep a note.\n\nThis tool takes free-form text"));
    assert!(!description(1).contains("grammar"), "{}", description(1));
    assert!(description(2).starts_with("This tool takes free-form text"));
    assert!(description(3).ends_with("The text must match this regular expression:\n^[0-9]+$"));
    assert!(description(4).starts_with("Run JavaScript.\n\n"));
    assert!(description(4).ends_with("lark grammar:\nstart: SOURCE\nSOURCE: /[\\s\\S]+/"));
    let mut custom: Vec<&str> = p.custom.iter().map(String::as_str).collect();
    custom.sort_unstable();
    assert_eq!(
        custom,
        ["apply_patch", "bare", "digits", "functions__exec", "note"]
    );
    assert_eq!(
        p.namespaced.get("functions__exec"),
        Some(&("functions".to_string(), "exec".to_string()))
    );

    // A custom tool still needs a name; deferred ones wait for a client's
    // tool search, which loads them as custom tools.
    let e = parse(
        &c,
        json!({"model":"m","input":"x","tools":[{"type":"custom"}]}),
    )
    .err()
    .unwrap();
    assert_eq!(e.param.as_deref(), Some("tools[0].name"));
    let mut body = tool_search_body(json!("x"));
    body["tools"][2] = json!({"type":"custom","name":"late","defer_loading":true});
    let p = parse(&c, body.clone()).unwrap();
    assert_eq!(offered(&p), ["exec_command", "tool_search"]);
    assert!(p.custom.is_empty());
    body["input"] = json!([
        {"role":"user","content":"x"},
        {"type":"tool_search_output","call_id":"ts1","tools":[{"type":"custom","name":"late","description":"Late."}]}
    ]);
    let p = parse(&c, body).unwrap();
    assert_eq!(offered(&p), ["exec_command", "tool_search", "late"]);
    assert!(p.custom.contains("late"));
    assert_eq!(
        p.native.tools.as_ref().unwrap()[2]["function"]["parameters"],
        custom_parameters()
    );
}

#[test]
fn custom_tool_calls_and_outputs_are_calls_and_tool_messages() {
    let c = config();
    let patch = "*** Begin Patch\n*** Add File: hello.txt\n+hi\n*** End Patch";
    let v = native_json(
        &c,
        json!({"model":"m","tools":[apply_patch_tool()],"input":[
            {"role":"user","content":"Add hello.txt"},
            {"type":"custom_tool_call","id":"ctc_1","status":"completed","call_id":"call_p","name":"apply_patch","input":patch},
            {"type":"custom_tool_call_output","call_id":"call_p","output":"Success. Updated the following files:\nA hello.txt\n"},
            {"type":"custom_tool_call","call_id":"call_e","namespace":"functions","name":"exec","input":"text('hi')"},
            {"type":"custom_tool_call_output","call_id":"call_e","output":[{"type":"input_text","text":"hi"}]},
            {"type":"custom_tool_call","call_id":"call_n","name":"note"},
            {"type":"custom_tool_call_output","call_id":"call_n"}
        ]}),
    );
    assert_eq!(
        v["messages"],
        json!([
            {"role":"user","content":"Add hello.txt"},
            {"role":"assistant","content":"","tool_calls":[
                {"id":"call_p","function":{"name":"apply_patch","arguments":{"input":patch}}}]},
            {"role":"tool","content":"Success. Updated the following files:\nA hello.txt\n",
             "tool_name":"apply_patch","tool_call_id":"call_p"},
            {"role":"assistant","content":"","tool_calls":[
                {"id":"call_e","function":{"name":"functions__exec","arguments":{"input":"text('hi')"}}}]},
            {"role":"tool","content":"hi","tool_name":"functions__exec","tool_call_id":"call_e"},
            {"role":"assistant","content":"","tool_calls":[
                {"id":"call_n","function":{"name":"note","arguments":{"input":""}}}]},
            {"role":"tool","content":"","tool_name":"note","tool_call_id":"call_n"}
        ])
    );
    for (item, param) in [
        (
            json!({"type":"custom_tool_call","call_id":"c","name":"x","input":{"a":1}}),
            "input[1].input",
        ),
        (
            json!({"type":"custom_tool_call","call_id":"c","input":"x"}),
            "input[1].name",
        ),
        (
            json!({"type":"custom_tool_call_output","call_id":"c","output":3}),
            "input[1].output",
        ),
    ] {
        let e = parse(
            &c,
            json!({"model":"m","input":[{"role":"user","content":"x"}, item]}),
        )
        .err()
        .unwrap();
        assert_eq!(e.param.as_deref(), Some(param), "{}", e.message);
    }
}

#[test]
fn additional_tools_items_offer_their_tools() {
    let c = config();
    // What Codex 0.169 sends for a `use_responses_lite` model: no `tools`,
    // an `additional_tools` item first, instructions as developer messages.
    let body = |tools: Value| {
        json!({"model":"m","tool_choice":"auto","input":[
            {"type":"additional_tools","id":"at_1","role":"developer","tools":tools},
            {"type":"message","role":"developer","content":[{"type":"input_text","text":"You are Codex."}]},
            {"type":"message","role":"user","content":[{"type":"input_text","text":"say hi"}]}
        ]})
    };
    let p = parse(
        &c,
        body(json!([
            {"type":"namespace","name":"functions","description":"","tools":[
                {"type":"custom","name":"exec","description":"Run JavaScript."},
                {"type":"function","name":"wait","strict":false,"parameters":{"type":"object","properties":{"cell_id":{"type":"string"}}}}
            ]},
            {"type":"function","name":"view_image","parameters":{"type":"object"}},
            {"type":"web_search"}
        ])),
    )
    .unwrap();
    assert_eq!(
        offered(&p),
        [
            "functions__exec",
            "functions__wait",
            "view_image",
            "web_search"
        ]
    );
    assert!(p.custom.contains("functions__exec"));
    assert_eq!(p.search, Some(crate::search::SearchTool::default()));
    let v = crate::dialect::native::finished(&c, p.native);
    assert_eq!(
        v["messages"],
        json!([{"role":"system","content":"You are Codex."},{"role":"user","content":"say hi"}])
    );

    // Offered with the request's own tools, after them; an empty item, or
    // one after the messages, is fine too.
    let mut b = body(json!([]));
    b["tools"] = json!([{"type":"function","name":"top"}]);
    b["input"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type":"additional_tools","role":"developer","tools":[{"type":"custom","name":"late"}]}));
    let p = parse(&c, b).unwrap();
    assert_eq!(offered(&p), ["top", "late"]);

    // Errors name the item's tool.
    for (tools, param) in [
        (json!({"type":"function","name":"f"}), "input[0].tools"),
        (json!([{"type":"function"}]), "input[0].tools[0].name"),
        (
            json!([{"type":"function","name":"web_search"},{"type":"web_search"}]),
            "input[0].tools[1]",
        ),
    ] {
        let e = parse(&c, body(tools)).err().unwrap();
        assert_eq!(e.param.as_deref(), Some(param), "{}", e.message);
    }
}

#[test]
fn stateful_requests_are_refused_clearly() {
    let c = config();
    // An id the store does not have: OpenAI's 404.
    let e = parse(
        &c,
        json!({"model":"m","input":"x","previous_response_id":"resp_1"}),
    )
    .err()
    .unwrap();
    assert_eq!(e.status, 404);
    assert_eq!(e.param.as_deref(), Some("previous_response_id"));
    assert_eq!(e.code, Some("previous_response_not_found"));
    let e = parse(&c, json!({"model":"m","input":"x","conversation":"conv_1"}))
        .err()
        .unwrap();
    assert_eq!(e.status, 400);
    assert_eq!(e.param.as_deref(), Some("conversation"));
    let e = parse(&c, json!({"model":"m","input":"x","background":true}))
        .err()
        .unwrap();
    assert_eq!(e.status, 400);
    assert_eq!(e.param.as_deref(), Some("background"));
    assert!(parse(
        &c,
        json!({"model":"m","input":"x","previous_response_id":null})
    )
    .is_ok());
}

#[test]
fn effort_format_extras_and_ignored_fields() {
    let c = config();
    let v = native_json(
        &c,
        json!({"model":"m","input":"x","reasoning":{"effort":"minimal","summary":"auto"},
            "text":{"format":{"type":"json_schema","name":"r","schema":{"type":"object"},"strict":true}},
            "top_k":20,"num_ctx":8192,"keep_alive":"1h","options":{"seed":3},
            "store":false,"prompt_cache_key":"k","client_metadata":{"a":"b"},"metadata":{"x":"y"},
            "user":"u","service_tier":"auto","truncation":"auto","stream_options":{"include_obfuscation":false},
            "include":["reasoning.encrypted_content"],"parallel_tool_calls":false}),
    );
    assert_eq!(v["think"], "low");
    assert_eq!(v["format"], json!({"type":"object"}));
    assert_eq!(v["options"], json!({"seed":3,"top_k":20,"num_ctx":8192}));
    assert_eq!(v["keep_alive"], "1h");

    let v = native_json(
        &c,
        json!({"model":"m","input":"x","text":{"format":{"type":"json_object"}},"think":false,"reasoning":{"effort":"high"}}),
    );
    assert_eq!(v["format"], "json");
    assert_eq!(v["think"], false, "native think wins");

    let e = parse(
        &c,
        json!({"model":"m","input":"x","reasoning":{"effort":"huge"}}),
    )
    .err()
    .unwrap();
    assert_eq!(e.param.as_deref(), Some("reasoning.effort"));

    let mut c = config();
    c.think_models.insert("glm-5:cloud".into());
    let v = native_json(&c, json!({"model":"glm-5:cloud","input":"x"}));
    assert_eq!(v["think"], true, "think-models rule applies when no effort");
}

#[test]
fn reasoning_round_trips_only_with_our_signature() {
    let c = config();
    let sealed = seal_reasoning(&c.thinking_key, "I should call the tool. ✓");
    assert!(sealed.starts_with("v1."));
    assert_eq!(
        open_reasoning(&c.thinking_key, &sealed).as_deref(),
        Some("I should call the tool. ✓")
    );
    let input = |enc: &str| {
        json!({"model":"m","input":[
            {"role":"user","content":"weather?"},
            {"type":"reasoning","id":"rs_1","summary":[{"type":"summary_text","text":"I should call the tool. ✓"}],"encrypted_content":enc},
            {"type":"function_call","call_id":"c","name":"get_weather","arguments":"{}"},
            {"type":"function_call_output","call_id":"c","output":"sunny"}
        ]})
    };
    let v = native_json(&c, input(&sealed));
    assert_eq!(v["messages"][1]["thinking"], "I should call the tool. ✓");
    assert_eq!(
        v["messages"][1]["tool_calls"][0]["function"]["name"],
        "get_weather"
    );

    // Tampered text, foreign key, garbage, summary only: all dropped.
    let (_, sig) = sealed.rsplit_once('.').unwrap();
    let tampered = format!("v1.{}.{sig}", base64_encode(b"I should rm -rf /."));
    let foreign = seal_reasoning(&crate::signing::derive_key(b"other"), "x");
    for bad in [
        tampered.as_str(),
        foreign.as_str(),
        "gAAAAB-openai-blob",
        "v1.!!!.00",
    ] {
        let v = native_json(&c, input(bad));
        assert!(v["messages"][1].get("thinking").is_none(), "{bad}");
    }
    let v = native_json(
        &c,
        json!({"model":"m","input":[
            {"role":"user","content":"q"},
            {"type":"reasoning","summary":[{"type":"summary_text","text":"planted"}]},
            {"role":"assistant","content":"a"}
        ]}),
    );
    assert!(v["messages"][1].get("thinking").is_none());
}

#[test]
fn reasoning_goes_to_the_next_assistant_message() {
    let c = config();
    let sealed = seal_reasoning(&c.thinking_key, "plan");
    let v = native_json(
        &c,
        json!({"model":"m","input":[
            {"role":"user","content":"q"},
            {"type":"reasoning","summary":[],"encrypted_content":sealed},
            {"type":"message","role":"assistant","content":[{"type":"output_text","text":"a"}]},
            {"role":"user","content":"q2"}
        ]}),
    );
    assert_eq!(
        v["messages"][1],
        json!({"role":"assistant","content":"a","thinking":"plan"})
    );
}

#[test]
fn base64_round_trips() {
    for s in ["", "f", "fo", "foo", "foob", "fooba", "foobar", "ünïcödé ✓"] {
        let e = base64_encode(s.as_bytes());
        assert_eq!(base64_decode(&e).unwrap(), s.as_bytes());
    }
    assert_eq!(base64_encode(b"foobar"), "Zm9vYmFy");
    assert_eq!(base64_encode(b"fo"), "Zm8=");
    assert!(base64_decode("Zm8").is_none());
    assert!(base64_decode("Z=m8").is_none());
}

// ---------------------------------------------------------------- responses

struct Run {
    out: String,
    finish_ok: bool,
}

fn run(stream: bool, include: bool, forward: bool, lines: &[&str]) -> Run {
    let c = config();
    let mut body = json!({"model":"client-model","input":"hi","tools":[{"type":"namespace","name":"crm","tools":[{"type":"function","name":"lookup"}]}]});
    if include {
        body["include"] = json!(["reasoning.encrypted_content"]);
    }
    let parsed = parse(&c, body).unwrap();
    let enc = ResponseEncoder::new(
        &parsed.client_model,
        &parsed.echo,
        stream,
        include.then_some(c.thinking_key),
        parsed.namespaced,
    );
    let mut d = Decoder::new(enc, forward);
    let mut out = BytesMut::new();
    for l in lines {
        d.line(l.as_bytes(), &mut out);
    }
    let finish_ok = d.finish(&mut out).is_ok();
    Run {
        out: String::from_utf8(out.to_vec()).unwrap(),
        finish_ok,
    }
}

/// Parses SSE, checking framing, `type` and consecutive sequence numbers.
fn events(out: &str) -> Vec<Value> {
    assert!(out.ends_with("\n\n"), "{out}");
    let mut v = Vec::new();
    for block in out.split("\n\n").filter(|b| !b.is_empty()) {
        let (ev, data) = block.split_once('\n').unwrap();
        let ev = ev.strip_prefix("event: ").unwrap();
        let data: Value = serde_json::from_str(data.strip_prefix("data: ").unwrap()).unwrap();
        assert_eq!(data["type"], ev);
        assert_eq!(data["sequence_number"], v.len() as u64, "{block}");
        v.push(data);
    }
    v
}

fn types(ev: &[Value]) -> Vec<&str> {
    ev.iter().map(|e| e["type"].as_str().unwrap()).collect()
}

const THINK1: &str =
    r#"{"message":{"role":"assistant","content":"","thinking":"Let me think"},"done":false}"#;
const THINK2: &str =
    r#"{"message":{"role":"assistant","content":"","thinking":" hard."},"done":false}"#;
const TEXT1: &str = r#"{"message":{"role":"assistant","content":"Hello"},"done":false}"#;
const TEXT2: &str = r#"{"message":{"role":"assistant","content":" \"world\""},"done":false}"#;
const DONE: &str = r#"{"message":{"role":"assistant","content":""},"done":true,"done_reason":"stop","prompt_eval_count":10,"eval_count":5}"#;

#[test]
fn streams_text() {
    let r = run(true, false, false, &[THINK1, TEXT1, TEXT2, DONE]);
    assert!(r.finish_ok);
    let ev = events(&r.out);
    assert_eq!(
        types(&ev),
        vec![
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.completed",
        ]
    );
    let created = &ev[0]["response"];
    assert_eq!(created["status"], "in_progress");
    assert_eq!(created["output"], json!([]));
    assert_eq!(created["object"], "response");
    assert_eq!(created["model"], "client-model");
    assert_eq!(created["store"], true);
    assert_eq!(created["tool_choice"], "auto");
    assert!(created["id"].as_str().unwrap().starts_with("resp_"));
    assert_eq!(ev[1]["response"]["id"], created["id"]);
    let item_id = ev[2]["item"]["id"].as_str().unwrap();
    assert!(item_id.starts_with("msg_"));
    assert_eq!(ev[2]["item"]["content"], json!([]));
    assert_eq!(ev[2]["item"]["status"], "in_progress");
    assert_eq!(ev[4]["item_id"], item_id);
    assert_eq!(ev[4]["delta"], "Hello");
    assert_eq!(ev[4]["logprobs"], json!([]));
    assert_eq!(ev[6]["text"], "Hello \"world\"");
    assert_eq!(ev[7]["part"]["text"], "Hello \"world\"");
    let done = &ev[9]["response"];
    assert_eq!(done["status"], "completed");
    assert_eq!(done["id"], created["id"]);
    assert_eq!(
        done["output"],
        json!([{"id":item_id,"type":"message","status":"completed","role":"assistant",
            "content":[{"type":"output_text","annotations":[],"logprobs":[],"text":"Hello \"world\""}]}])
    );
    assert_eq!(
        done["usage"],
        json!({"input_tokens":10,"input_tokens_details":{"cached_tokens":0},"output_tokens":5,
            "output_tokens_details":{"reasoning_tokens":0},"total_tokens":15})
    );
    assert_eq!(done["output"][0], ev[8]["item"]);
}

#[test]
fn streams_reasoning_then_text() {
    let r = run(true, true, true, &[THINK1, THINK2, TEXT1, DONE]);
    let ev = events(&r.out);
    assert_eq!(
        types(&ev),
        vec![
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.reasoning_summary_part.added",
            "response.reasoning_summary_text.delta",
            "response.reasoning_summary_text.delta",
            "response.reasoning_summary_text.done",
            "response.reasoning_summary_part.done",
            "response.output_item.done",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.completed",
        ]
    );
    assert_eq!(ev[2]["item"]["type"], "reasoning");
    assert!(ev[2]["item"].get("encrypted_content").is_none());
    assert_eq!(ev[2]["output_index"], 0);
    assert_eq!(ev[6]["text"], "Let me think hard.");
    let rs = &ev[8]["item"];
    assert_eq!(
        rs["summary"],
        json!([{"type":"summary_text","text":"Let me think hard."}])
    );
    let sealed = rs["encrypted_content"].as_str().unwrap();
    assert_eq!(
        open_reasoning(&config().thinking_key, sealed),
        None,
        "a different process key does not verify"
    );
    assert_eq!(ev[9]["output_index"], 1);
    let out = &ev[15]["response"]["output"];
    assert_eq!(out.as_array().unwrap().len(), 2);
    assert_eq!(out[0], *rs);

    // Without include: no encrypted_content anywhere.
    let r = run(true, false, true, &[THINK1, TEXT1, DONE]);
    assert!(!r.out.contains("encrypted_content"));
    // Reasoning not forwarded: no reasoning item at all.
    let r = run(true, true, false, &[THINK1, TEXT1, DONE]);
    assert!(!r.out.contains("\"reasoning\",\"summary\""));
}

#[test]
fn streams_tool_calls_from_the_done_line_and_text_after_them() {
    let r = run(
        true,
        false,
        false,
        &[
            TEXT1,
            r#"{"message":{"role":"assistant","content":"","tool_calls":[{"id":"call_x","function":{"index":0,"name":"crm__lookup","arguments":{"id":7}}}]},"done":false}"#,
            r#"{"message":{"role":"assistant","content":"after"},"done":false}"#,
            r#"{"message":{"role":"assistant","content":"","tool_calls":[{"id":"call_x","function":{"index":0,"name":"get_weather","arguments":{"city":"Tokyo"}}}]},"done":true,"done_reason":"stop","prompt_eval_count":3,"eval_count":4}"#,
        ],
    );
    let ev = events(&r.out);
    assert_eq!(
        types(&ev),
        vec![
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.output_item.added",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.done",
            "response.output_item.done",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.output_item.added",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.done",
            "response.output_item.done",
            "response.completed",
        ]
    );
    let added = &ev[8]["item"];
    assert_eq!(added["type"], "function_call");
    assert_eq!(added["arguments"], "");
    assert_eq!(added["call_id"], "call_x");
    assert_eq!(added["name"], "lookup");
    assert_eq!(added["namespace"], "crm");
    assert!(added["id"].as_str().unwrap().starts_with("fc_"));
    assert_eq!(ev[9]["delta"], "{\"id\":7}");
    assert_eq!(ev[10]["arguments"], "{\"id\":7}");
    assert_eq!(ev[11]["item"]["status"], "completed");
    assert_eq!(ev[12]["output_index"], 2);
    assert_eq!(ev[14]["delta"], "after");
    let second = &ev[21]["item"];
    assert_eq!(second["name"], "get_weather");
    assert!(second.get("namespace").is_none());
    assert_ne!(
        second["call_id"], "call_x",
        "a repeated call id is replaced"
    );
    assert_eq!(ev[22]["response"]["output"].as_array().unwrap().len(), 4);
    assert_eq!(ev[22]["response"]["status"], "completed");
}

#[test]
fn tool_search_calls_are_tool_search_call_items() {
    let c = config();
    let line = r#"{"message":{"role":"assistant","content":"","tool_calls":[{"id":"call_1","function":{"index":0,"name":"tool_search","arguments":{"query":"docs","limit":2}}}]},"done":false}"#;
    let want = |status: &str, id: &Value| {
        json!({"id":id,"type":"tool_search_call","status":status,"execution":"client",
               "call_id":"call_1","arguments":{"query":"docs","limit":2}})
    };
    for (tools, search) in [
        (json!([{"type":"tool_search","execution":"client"}]), true),
        (json!([{"type":"function","name":"tool_search"}]), false),
    ] {
        let parsed = parse(
            &c,
            json!({"model":"client-model","input":"hi","tools":tools}),
        )
        .unwrap();
        assert_eq!(parsed.tool_search, search);
        for stream in [true, false] {
            let enc = ResponseEncoder::new(
                &parsed.client_model,
                &parsed.echo,
                stream,
                None,
                parsed.namespaced.clone(),
            )
            .with_tool_search(parsed.tool_search);
            let mut d = Decoder::new(enc, false);
            let mut out = BytesMut::new();
            d.line(line.as_bytes(), &mut out);
            d.line(DONE.as_bytes(), &mut out);
            assert!(d.finish(&mut out).is_ok());
            let out = String::from_utf8(out.to_vec()).unwrap();
            let output = if stream {
                let ev = events(&out);
                if !search {
                    assert!(types(&ev).contains(&"response.function_call_arguments.done"));
                    continue;
                }
                assert_eq!(
                    types(&ev),
                    [
                        "response.created",
                        "response.in_progress",
                        "response.output_item.added",
                        "response.output_item.done",
                        "response.completed"
                    ]
                );
                let id = &ev[2]["item"]["id"];
                assert!(id.as_str().unwrap().starts_with("tsc_"), "{id}");
                assert_eq!(ev[2]["item"], want("in_progress", id));
                assert_eq!(ev[3]["item"], want("completed", id));
                ev[4]["response"]["output"].clone()
            } else {
                let v: Value = serde_json::from_str(&out).unwrap();
                if !search {
                    assert_eq!(v["output"][0]["type"], "function_call");
                    continue;
                }
                v["output"].clone()
            };
            assert_eq!(output, json!([want("completed", &output[0]["id"])]));
        }
    }
}

/// One streamed (or whole) answer to `body` made of `lines`.
fn answer(body: Value, stream: bool, lines: &[&str]) -> String {
    let c = config();
    let parsed = parse(&c, body).unwrap();
    let enc = ResponseEncoder::new(
        &parsed.client_model,
        &parsed.echo,
        stream,
        None,
        parsed.namespaced,
    )
    .with_custom(parsed.custom);
    let mut d = Decoder::new(enc, false);
    let mut out = BytesMut::new();
    for l in lines {
        d.line(l.as_bytes(), &mut out);
    }
    assert!(d.finish(&mut out).is_ok());
    String::from_utf8(out.to_vec()).unwrap()
}

fn call_line(id: &str, name: &str, arguments: &Value) -> String {
    json!({"message":{"role":"assistant","content":"","tool_calls":[
        {"id":id,"function":{"index":0,"name":name,"arguments":arguments}}]},"done":false})
    .to_string()
}

#[test]
fn custom_tool_calls_are_custom_tool_call_items() {
    let patch = "*** Begin Patch\n*** Add File: hello.txt\n+hi\n*** End Patch";
    let body = json!({"model":"client-model","input":"hi","tools":[
        apply_patch_tool(),
        {"type":"function","name":"get_weather"},
        {"type":"namespace","name":"functions","tools":[{"type":"custom","name":"exec"}]}
    ]});
    let patch_call = call_line("call_p", "apply_patch", &json!({ "input": patch }));
    let exec_call = call_line("call_e", "functions__exec", &json!({"input":"text(1)"}));
    let weather = call_line("call_w", "get_weather", &json!({"city":"Tokyo"}));
    let lines = [
        TEXT1,
        patch_call.as_str(),
        exec_call.as_str(),
        weather.as_str(),
        DONE,
    ];
    let want = |status: &str, id: &Value, input: &str| {
        json!({"id":id,"type":"custom_tool_call","status":status,"call_id":"call_p",
               "name":"apply_patch","input":input})
    };

    let ev = events(&answer(body.clone(), true, &lines));
    assert_eq!(
        types(&ev)[8..],
        [
            "response.output_item.added",
            "response.custom_tool_call_input.delta",
            "response.custom_tool_call_input.done",
            "response.output_item.done",
            "response.output_item.added",
            "response.custom_tool_call_input.delta",
            "response.custom_tool_call_input.done",
            "response.output_item.done",
            "response.output_item.added",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.done",
            "response.output_item.done",
            "response.completed",
        ]
    );
    let id = &ev[8]["item"]["id"];
    assert!(id.as_str().unwrap().starts_with("ctc_"), "{id}");
    assert_eq!(ev[8]["output_index"], 1);
    assert_eq!(ev[8]["item"], want("in_progress", id, ""));
    for e in &ev[9..11] {
        assert_eq!((&e["item_id"], &e["output_index"]), (id, &json!(1)));
    }
    assert_eq!(ev[9]["delta"], patch);
    assert_eq!(ev[10]["input"], patch);
    assert_eq!(ev[11]["item"], want("completed", id, patch));
    let exec = &ev[15]["item"];
    assert_eq!(
        (
            &exec["type"],
            &exec["name"],
            &exec["namespace"],
            &exec["input"]
        ),
        (
            &json!("custom_tool_call"),
            &json!("exec"),
            &json!("functions"),
            &json!("text(1)")
        )
    );
    assert_eq!(ev[19]["item"]["type"], "function_call");
    let output = &ev[20]["response"]["output"];
    assert_eq!(output[1], want("completed", id, patch));
    assert_eq!(output.as_array().unwrap().len(), 4);

    // Not streaming: the same items in one response object.
    let v: Value = serde_json::from_str(&answer(body, false, &lines)).unwrap();
    let out = &v["output"];
    assert_eq!(out[1], want("completed", &out[1]["id"], patch));
    assert_eq!(out[2]["namespace"], "functions");
    assert_eq!(out[3]["type"], "function_call");
}

#[test]
fn custom_tool_input_is_the_text_however_the_model_wrote_it() {
    let body = json!({"model":"client-model","input":"hi","tools":[apply_patch_tool()]});
    let patch = "*** Begin Patch\n*** End Patch";
    for (arguments, input) in [
        (json!({ "input": patch }), patch.to_string()),
        // The bare text, which Ollama's decoder wraps as {"value":…}.
        (json!(patch), patch.to_string()),
        // The object's JSON inside a string.
        (
            json!(json!({ "input": patch }).to_string()),
            patch.to_string(),
        ),
        (json!({ "patch": patch }), patch.to_string()),
        (json!({}), String::new()),
        (json!({"input": null}), String::new()),
        (json!({"input": {"a": 1}}), "{\"a\":1}".to_string()),
        (json!({"input": "x", "extra": 1}), "x".to_string()),
        (
            json!({"a": "x", "b": "y"}),
            "{\"a\":\"x\",\"b\":\"y\"}".to_string(),
        ),
        (json!(42), "42".to_string()),
    ] {
        let line = call_line("call_p", "apply_patch", &arguments);
        let v: Value = serde_json::from_str(&answer(body.clone(), false, &[&line, DONE])).unwrap();
        assert_eq!(v["output"][0]["type"], "custom_tool_call", "{arguments}");
        assert_eq!(v["output"][0]["input"], input, "{arguments}");
    }
    // Without the tool offered, a call of that name is a function call.
    let line = call_line("call_p", "apply_patch", &json!({ "input": patch }));
    let v: Value = serde_json::from_str(&answer(
        json!({"model":"m","input":"hi"}),
        false,
        &[&line, DONE],
    ))
    .unwrap();
    assert_eq!(v["output"][0]["type"], "function_call");
}

#[test]
fn length_cut_is_incomplete() {
    let r = run(
        true,
        false,
        false,
        &[
            TEXT1,
            r#"{"message":{"role":"assistant","content":""},"done":true,"done_reason":"length","prompt_eval_count":1,"eval_count":1}"#,
        ],
    );
    let ev = events(&r.out);
    let last = ev.last().unwrap();
    assert_eq!(last["type"], "response.incomplete");
    assert_eq!(last["response"]["status"], "incomplete");
    assert_eq!(
        last["response"]["incomplete_details"],
        json!({"reason":"max_output_tokens"})
    );
    assert_eq!(last["response"]["output"][0]["status"], "incomplete");
    assert_eq!(last["response"]["usage"]["total_tokens"], 2);
}

#[test]
fn mid_stream_error_fails_and_ends() {
    let r = run(
        true,
        false,
        false,
        &[TEXT1, r#"{"error":"runner died"}"#, TEXT2, DONE],
    );
    assert!(r.finish_ok);
    let ev = events(&r.out);
    assert_eq!(
        types(&ev),
        vec![
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.failed",
        ]
    );
    let resp = &ev[5]["response"];
    assert_eq!(resp["status"], "failed");
    assert_eq!(
        resp["error"],
        json!({"code":"server_error","message":"runner died"})
    );
    assert_eq!(resp["output"][0]["status"], "incomplete");
    assert_eq!(resp["output"][0]["content"][0]["text"], "Hello");

    // A stream that just stops fails too, and the body reports an error.
    let r = run(true, false, false, &[TEXT1]);
    assert!(!r.finish_ok);
    let ev = events(&r.out);
    assert_eq!(ev.last().unwrap()["type"], "response.failed");

    // An error before anything else still opens the response first.
    let r = run(true, false, false, &["not json"]);
    assert_eq!(
        types(&events(&r.out)),
        vec![
            "response.created",
            "response.in_progress",
            "response.failed"
        ]
    );
}

#[test]
fn non_streaming_builds_one_response_object() {
    let r = run(
        false,
        true,
        true,
        &[
            r#"{"model":"q","message":{"role":"assistant","content":"Hi","thinking":"hm","tool_calls":[{"id":"call_1","function":{"name":"crm__lookup","arguments":{"id":1}}}]},"done":true,"done_reason":"stop","prompt_eval_count":4,"eval_count":6}"#,
        ],
    );
    let v: Value = serde_json::from_str(&r.out).unwrap();
    assert_eq!(v["object"], "response");
    assert_eq!(v["status"], "completed");
    assert_eq!(v["model"], "client-model");
    assert_eq!(v["error"], Value::Null);
    assert_eq!(v["metadata"], json!({}));
    assert_eq!(v["parallel_tool_calls"], true);
    assert_eq!(v["tools"][0]["type"], "namespace");
    let out = v["output"].as_array().unwrap();
    assert_eq!(out.len(), 3);
    assert_eq!(out[0]["type"], "reasoning");
    assert!(out[0]["encrypted_content"]
        .as_str()
        .unwrap()
        .starts_with("v1."));
    assert_eq!(out[1]["content"][0]["text"], "Hi");
    assert_eq!(
        out[2],
        json!({"id":out[2]["id"],"type":"function_call","status":"completed","call_id":"call_1",
            "name":"lookup","namespace":"crm","arguments":"{\"id\":1}"})
    );
    assert_eq!(v["usage"]["output_tokens"], 6);

    let r = run(false, false, false, &["garbage"]);
    let v: Value = serde_json::from_str(&r.out).unwrap();
    assert_eq!(v["status"], "failed");
    assert_eq!(v["error"]["code"], "server_error");
}

#[test]
fn echo_reflects_the_request() {
    let c = config();
    let p = parse(
        &c,
        json!({"model":"m","input":"x","instructions":"sys","max_output_tokens":9,"temperature":0.5,
            "tool_choice":"required","parallel_tool_calls":false,"reasoning":{"effort":"low","summary":"auto"},
            "metadata":{"k":"v"}}),
    )
    .unwrap();
    let mut body = b"{\"a\":1".to_vec();
    body.extend_from_slice(&p.echo);
    body.push(b'}');
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["instructions"], "sys");
    assert_eq!(v["max_output_tokens"], 9);
    assert_eq!(v["temperature"], 0.5);
    assert_eq!(v["top_p"], Value::Null);
    assert_eq!(v["tool_choice"], "required");
    assert_eq!(v["parallel_tool_calls"], false);
    assert_eq!(v["reasoning"], json!({"effort":"low","summary":"auto"}));
    assert_eq!(v["text"], json!({"format":{"type":"text"}}));
    assert_eq!(v["metadata"], json!({"k":"v"}));
    assert_eq!(v["store"], true, "kept unless the client says store: false");
    assert_eq!(v["previous_response_id"], Value::Null);
    let p = parse(&c, json!({"model":"m","input":"x","store":false})).unwrap();
    let v: Value =
        serde_json::from_slice(&[b"{\"a\":1".as_slice(), &p.echo, b"}"].concat()).unwrap();
    assert_eq!(v["store"], false);
    assert!(p.keep.is_none(), "store: false is never kept");
}

#[test]
fn prepare_routes_and_picks_content_type() {
    use crate::dialect::route;
    let d = route(&Method::POST, "/v1/responses").unwrap();
    assert_eq!(d.name(), "responses");
    let (parts, ()) = http::Request::post("/v1/responses")
        .body(())
        .unwrap()
        .into_parts();
    let up = d
        .prepare(
            &config(),
            &Shared::default(),
            &parts,
            br#"{"model":"m","input":"x","stream":true}"#,
        )
        .unwrap();
    assert_eq!(up.delivery.content_type(), SSE);
    assert_eq!(up.endpoint.path(), "/api/chat");
    let up = d
        .prepare(
            &config(),
            &Shared::default(),
            &parts,
            br#"{"model":"m","input":"x"}"#,
        )
        .unwrap();
    assert_eq!(up.delivery.content_type(), JSON);
    assert_eq!(up.delivery, crate::dialect::Delivery::Collect);
    let v: Value = serde_json::from_slice(&up.body).unwrap();
    assert_eq!(v["stream"], true, "Ollama streams; the answer is collected");
    let e = d
        .prepare(
            &config(),
            &Shared::default(),
            &parts,
            br#"{"model":"m","input":"x","previous_response_id":"resp_1"}"#,
        )
        .err()
        .unwrap();
    assert_eq!(e.status, 404);
    let v: Value = serde_json::from_slice(&d.error_body(&e)).unwrap();
    assert_eq!(v["error"]["param"], "previous_response_id");
    assert_eq!(v["error"]["code"], "previous_response_not_found");
    assert_eq!(v["error"]["type"], "not_found_error");
}

#[test]
fn keepalives_are_comments_while_the_response_runs() {
    let c = config();
    let parsed = parse(&c, json!({"model": "m", "input": "hi"})).unwrap();
    let enc = ResponseEncoder::new("m", &parsed.echo, true, None, parsed.namespaced);
    let mut d = Decoder::new(enc, false);
    let mut out = BytesMut::new();
    // Dropped thinking writes nothing but the start; the body's keep-alive
    // (tests/keepalive.rs) decides when a comment is due.
    for _ in 0..130 {
        d.line(THINK1.as_bytes(), &mut out);
    }
    let started = out.len();
    assert!(!String::from_utf8_lossy(&out).contains(": keep-alive"));
    d.idle(&mut out);
    assert_eq!(&out[started..], b": keep-alive\n\n");
    d.line(TEXT1.as_bytes(), &mut out);
    d.line(DONE.as_bytes(), &mut out);
    let end = out.len();
    d.idle(&mut out);
    assert_eq!(out.len(), end, "no keep-alive after the end");
    let text = String::from_utf8(out.to_vec()).unwrap();
    let sse: String = text
        .split_inclusive("\n\n")
        .filter(|b| !b.starts_with(':'))
        .collect();
    assert_eq!(events(&sse).last().unwrap()["type"], "response.completed");
}

/// A final line whose prompt count is `u64::MAX`.
const HUGE_COUNTS: &str = r#"{"message":{"role":"assistant","content":"x"},"done":true,"done_reason":"stop","prompt_eval_count":18446744073709551615,"eval_count":5}"#;

#[test]
fn usage_totals_saturate_streamed_and_whole() {
    let r = run(true, false, false, &[HUGE_COUNTS]);
    assert!(r.finish_ok);
    let ev = events(&r.out);
    let usage = &ev.last().unwrap()["response"]["usage"];
    assert_eq!(usage["input_tokens"], u64::MAX);
    assert_eq!(usage["output_tokens"], 5);
    assert_eq!(usage["total_tokens"], u64::MAX);

    let r = run(false, false, false, &[HUGE_COUNTS]);
    assert!(r.finish_ok);
    let v: Value = serde_json::from_str(&r.out).unwrap();
    assert_eq!(v["usage"]["total_tokens"], u64::MAX);
}

/// Tool-call arguments some models send as a JSON string.
const STRING_ARGUMENTS: &str = r#"{"message":{"role":"assistant","content":"","tool_calls":[{"id":"call_1","function":{"index":0,"name":"get_weather","arguments":"{\"city\":\"Tokyo\"}"}}]},"done":true,"done_reason":"stop","prompt_eval_count":1,"eval_count":2}"#;

#[test]
fn string_arguments_are_not_encoded_twice() {
    let r = run(true, false, false, &[STRING_ARGUMENTS]);
    let ev = events(&r.out);
    let done = ev
        .iter()
        .find(|e| e["type"] == "response.function_call_arguments.done")
        .unwrap();
    assert_eq!(done["arguments"], r#"{"city":"Tokyo"}"#);

    let r = run(false, false, false, &[STRING_ARGUMENTS]);
    let v: Value = serde_json::from_str(&r.out).unwrap();
    assert_eq!(v["output"][0]["type"], "function_call");
    assert_eq!(v["output"][0]["arguments"], r#"{"city":"Tokyo"}"#);
}

// ------------------------------------------------------ conversation state

use crate::store::{Owner, ResponseStore, StoreLimits};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The owner of requests sent with `Authorization: Bearer <key>`.
fn owner(key: &str) -> Owner {
    let mut h = http::HeaderMap::new();
    h.insert("authorization", format!("Bearer {key}").parse().unwrap());
    Owner::of(&h)
}

/// A clock the tests move by hand (the layer's timer).
struct Clock(Mutex<Instant>);

impl crate::timer::Timer for Clock {
    fn sleep_until(&self, _deadline: Instant) -> crate::timer::Sleep {
        Box::pin(std::future::pending())
    }
    fn now(&self) -> Instant {
        *self.0.lock().unwrap()
    }
}

impl Clock {
    fn advance(&self, by: Duration) {
        *self.0.lock().unwrap() += by;
    }
}

/// A layer as these tests drive it: its configuration, and its run-time
/// state (the response store).
struct Layer {
    config: Config,
    shared: Shared,
}

impl std::ops::Deref for Layer {
    type Target = Config;
    fn deref(&self) -> &Config {
        &self.config
    }
}

/// A layer with `config` and a fresh state.
fn layer(config: Config) -> Layer {
    Layer {
        config,
        shared: Shared::default(),
    }
}

/// A layer whose timer is `clock`, and whose store keeps responses for
/// `ttl`.
fn clocked(clock: &Arc<Clock>, ttl: Duration) -> Layer {
    let mut c = layer(config());
    c.config.timing.timer = Some(clock.clone());
    c.shared.responses = ResponseStore::new(StoreLimits {
        ttl,
        ..StoreLimits::default()
    });
    c
}

/// One answer of Ollama's: `text` on the final line.
fn says(text: &str) -> String {
    json!({"message":{"role":"assistant","content":text},"done":true,"done_reason":"stop",
        "prompt_eval_count":3,"eval_count":2})
    .to_string()
}

/// One turn as the layer runs it for `owner`: the request parsed, Ollama's
/// `lines` through the encoder (the final line keeps the response). The
/// response id and what the client got.
fn turn(c: &Layer, owner: Owner, body: Value, lines: &[&str]) -> (String, String) {
    let stream = body["stream"] == true;
    let parsed = parse_request_for(c, &c.shared, body.to_string().as_bytes(), Some(owner)).unwrap();
    let mut enc = ResponseEncoder::new(
        &parsed.client_model,
        &parsed.echo,
        stream,
        parsed.include_encrypted.then_some(c.thinking_key),
        parsed.namespaced,
    )
    .with_tool_search(parsed.tool_search)
    .with_custom(parsed.custom);
    enc.keep = parsed.keep;
    let id = enc.id.clone();
    let mut d = Decoder::new(enc, true);
    let mut out = BytesMut::new();
    for l in lines {
        d.line(l.as_bytes(), &mut out);
    }
    let _ = d.finish(&mut out);
    (id, String::from_utf8(out.to_vec()).unwrap())
}

/// The native request made of `body` for `owner`.
fn native_for(c: &Layer, owner: Owner, body: Value) -> Value {
    let parsed = parse_request_for(c, &c.shared, body.to_string().as_bytes(), Some(owner))
        .unwrap_or_else(|e| panic!("{}: {}", e.status, e.message));
    crate::dialect::native::finished(c, parsed.native)
}

/// The error `body` gets for `owner`.
fn refused(c: &Layer, owner: Owner, body: Value) -> ApiError {
    match parse_request_for(c, &c.shared, body.to_string().as_bytes(), Some(owner)) {
        Ok(_) => panic!("accepted: {body}"),
        Err(e) => e,
    }
}

/// The kept items of `id` (for `owner`), as JSON.
fn kept_items(c: &Layer, id: &str, owner: Owner) -> Vec<Value> {
    let kept = c.shared.responses.get(id, owner, c.now()).expect("kept");
    serde_json::from_slice(&kept.items).unwrap()
}

fn kept_response(c: &Layer, id: &str, owner: Owner) -> Option<Value> {
    let kept = c.shared.responses.get(id, owner, c.now())?;
    Some(serde_json::from_slice(&kept.response).unwrap())
}

fn assert_not_found(e: &ApiError, id: &str) {
    assert_eq!(e.status, 404, "{}", e.message);
    assert_eq!(e.code, Some("previous_response_not_found"));
    assert_eq!(e.param.as_deref(), Some("previous_response_id"));
    assert!(e.message.contains(id), "{}", e.message);
}

#[test]
fn a_continuation_is_the_kept_items_then_the_new_input() {
    let c = layer(config());
    let k = owner("k1");
    let (r1, _) = turn(
        &c,
        k,
        json!({"model":"m","instructions":"Old rules.","input":"first"}),
        &[&says("one")],
    );
    // An array input, streamed.
    let (r2, _) = turn(
        &c,
        k,
        json!({"model":"m","stream":true,"previous_response_id":r1,
            "input":[{"type":"message","role":"user","content":[{"type":"input_text","text":"second"}]}]}),
        &[&says("two")],
    );
    let v = native_for(
        &c,
        k,
        json!({"model":"m","instructions":"New rules.","previous_response_id":r2,"input":"third"}),
    );
    assert_eq!(
        v["messages"],
        json!([
            {"role":"system","content":"New rules."},
            {"role":"user","content":"first"},
            {"role":"assistant","content":"one"},
            {"role":"user","content":"second"},
            {"role":"assistant","content":"two"},
            {"role":"user","content":"third"}
        ]),
        "the new request's instructions only, then the kept turns in order"
    );

    // What is kept: every input item of the chain, then the output items.
    let items = kept_items(&c, &r2, k);
    assert_eq!(items.len(), 4, "{items:?}");
    assert_eq!(
        items[0],
        json!({"type":"message","role":"user","content":[{"type":"input_text","text":"first"}]}),
        "a string input is kept as a user message item"
    );
    assert_eq!(items[1]["type"], "message");
    assert_eq!(items[1]["role"], "assistant");
    assert_eq!(items[1]["content"][0]["text"], "one");
    assert!(items[1]["id"].as_str().unwrap().starts_with("msg_"));
    assert_eq!(items[2]["content"][0]["text"], "second");
    assert_eq!(items[3]["content"][0]["text"], "two");
    assert_eq!(kept_items(&c, &r1, k).len(), 2, "r1 is kept as it was");
    assert_eq!(
        kept_items(&c, &r1, k)[1]["id"],
        items[1]["id"],
        "the same output item, not a copy made up again"
    );
}

#[test]
fn input_messages_are_kept_but_instructions_and_options_are_not() {
    let c = layer(config());
    let k = owner("k1");
    let (r1, _) = turn(
        &c,
        k,
        json!({"model":"m","instructions":"Only this turn.","temperature":0.1,"max_output_tokens":50,
            "top_p":0.5,"tools":[{"type":"function","name":"f"}],"tool_choice":"auto",
            "input":[{"role":"developer","content":"Dev rule."},{"role":"user","content":"hi"}]}),
        &[&says("hello")],
    );
    let v = native_for(
        &c,
        k,
        json!({"model":"other","previous_response_id":r1,"input":"again"}),
    );
    assert_eq!(
        v["messages"],
        json!([
            {"role":"system","content":"Dev rule."},
            {"role":"user","content":"hi"},
            {"role":"assistant","content":"hello"},
            {"role":"user","content":"again"}
        ]),
        "a developer message is an input item (kept); instructions are not"
    );
    assert_eq!(v["model"], "other", "the new request's model");
    assert!(v.get("options").is_none(), "no kept options: {v}");
    assert!(v.get("tools").is_none(), "no kept tools: {v}");

    let v = native_for(
        &c,
        k,
        json!({"model":"m","previous_response_id":r1,"input":"again","temperature":0.9,
            "instructions":"Now this."}),
    );
    assert_eq!(v["options"], json!({"temperature":0.9}));
    assert_eq!(
        v["messages"][0],
        json!({"role":"system","content":"Now this."})
    );
    assert_eq!(v["messages"].as_array().unwrap().len(), 5);
}

#[test]
fn the_echo_names_previous_response_id_and_store() {
    let c = layer(config());
    let k = owner("k1");
    let (r1, out) = turn(&c, k, json!({"model":"m","input":"a"}), &[&says("b")]);
    let first: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(first["previous_response_id"], Value::Null);
    assert_eq!(first["store"], true);
    assert_eq!(first["id"], r1.as_str());

    let (r2, out) = turn(
        &c,
        k,
        json!({"model":"m","input":"c","previous_response_id":r1,"stream":true}),
        &[&says("d")],
    );
    let ev = events(&out);
    for e in [&ev[0], ev.last().unwrap()] {
        assert_eq!(e["response"]["previous_response_id"], r1.as_str());
        assert_eq!(e["response"]["store"], true);
        assert_eq!(e["response"]["id"], r2.as_str());
    }

    let (_, out) = turn(
        &c,
        k,
        json!({"model":"m","input":"e","previous_response_id":r2,"store":false}),
        &[&says("f")],
    );
    let third: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(third["previous_response_id"], r2.as_str());
    assert_eq!(third["store"], false);
    assert_eq!(output_text(&third), "f");
}

fn output_text(response: &Value) -> String {
    response["output"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["type"] == "message")
        .flat_map(|i| i["content"].as_array().unwrap().iter())
        .map(|p| p["text"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn previous_response_id_must_be_a_string() {
    let c = layer(config());
    let k = owner("k1");
    for bad in [
        json!(5),
        json!(true),
        json!({"id":"resp_1"}),
        json!(["resp_1"]),
    ] {
        let e = refused(
            &c,
            k,
            json!({"model":"m","input":"x","previous_response_id":bad}),
        );
        assert_eq!(e.status, 400, "{bad}: {}", e.message);
        assert_eq!(e.param.as_deref(), Some("previous_response_id"), "{bad}");
        assert_eq!(e.code, None);
    }
    // null and "" continue nothing.
    for none in [Value::Null, json!("")] {
        let v = native_for(
            &c,
            k,
            json!({"model":"m","input":"x","previous_response_id":none}),
        );
        assert_eq!(v["messages"], json!([{"role":"user","content":"x"}]));
    }
}

#[test]
fn a_store_that_keeps_nothing_refuses_previous_response_id() {
    let limits = [
        StoreLimits {
            entries: 0,
            ..StoreLimits::default()
        },
        StoreLimits {
            bytes: 0,
            ..StoreLimits::default()
        },
        StoreLimits {
            ttl: Duration::ZERO,
            ..StoreLimits::default()
        },
    ];
    for limits in limits {
        let mut c = layer(config());
        c.shared.responses = ResponseStore::new(limits);
        let k = owner("k1");
        let e = refused(
            &c,
            k,
            json!({"model":"m","input":"x","previous_response_id":"resp_1"}),
        );
        assert_eq!(e.status, 400, "{limits:?}");
        assert_eq!(e.param.as_deref(), Some("previous_response_id"));
        assert!(e.message.contains("keeps none"), "{}", e.message);
        // Nothing to keep with: the answer is not kept, but still answered.
        let p = parse_request_for(&c, &c.shared, br#"{"model":"m","input":"x"}"#, Some(k)).unwrap();
        assert!(p.keep.is_none(), "{limits:?}");
        let (id, out) = turn(&c, k, json!({"model":"m","input":"x"}), &[&says("y")]);
        assert_eq!(output_text(&serde_json::from_str(&out).unwrap()), "y");
        assert!(kept_response(&c, &id, k).is_none());
    }
}

#[test]
fn unknown_foreign_expired_and_deleted_ids_are_not_found() {
    let clock = Arc::new(Clock(Mutex::new(Instant::now())));
    let c = clocked(&clock, Duration::from_secs(60));
    let (k1, k2) = (owner("k1"), owner("k2"));
    let (r1, _) = turn(&c, k1, json!({"model":"m","input":"a"}), &[&says("b")]);
    let cont = |id: &str| json!({"model":"m","input":"c","previous_response_id":id});

    assert_not_found(&refused(&c, k1, cont("resp_nosuch")), "resp_nosuch");
    assert_not_found(&refused(&c, k2, cont(&r1)), &r1);
    let anonymous = Owner::of(&http::HeaderMap::new());
    assert_not_found(&refused(&c, anonymous, cont(&r1)), &r1);
    // The same key in x-api-key is the same owner.
    let mut h = http::HeaderMap::new();
    h.insert("x-api-key", "k1".parse().unwrap());
    assert_eq!(
        native_for(&c, Owner::of(&h), cont(&r1))["messages"]
            .as_array()
            .unwrap()
            .len(),
        3
    );

    clock.advance(Duration::from_secs(59));
    assert_eq!(
        native_for(&c, k1, cont(&r1))["messages"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    clock.advance(Duration::from_secs(1));
    assert_not_found(&refused(&c, k1, cont(&r1)), &r1);

    // Kept when answered, by the layer's clock: a turn answered now lives
    // 60 s from now.
    let (r2, _) = turn(&c, k1, json!({"model":"m","input":"a"}), &[&says("b")]);
    clock.advance(Duration::from_secs(30));
    assert!(kept_response(&c, &r2, k1).is_some());
    assert!(c.shared.responses.remove(&r2, k1, c.now()));
    assert_not_found(&refused(&c, k1, cont(&r2)), &r2);
}

#[test]
fn a_use_does_not_extend_the_time_to_live() {
    let clock = Arc::new(Clock(Mutex::new(Instant::now())));
    let c = clocked(&clock, Duration::from_secs(10));
    let k = owner("k1");
    let (r1, _) = turn(&c, k, json!({"model":"m","input":"a"}), &[&says("b")]);
    clock.advance(Duration::from_secs(6));
    let (r2, _) = turn(
        &c,
        k,
        json!({"model":"m","input":"c","previous_response_id":r1}),
        &[&says("d")],
    );
    clock.advance(Duration::from_secs(6));
    assert!(kept_response(&c, &r1, k).is_none(), "12 s old");
    assert!(kept_response(&c, &r2, k).is_some(), "6 s old");
    // r2 still has the whole conversation, though r1 is gone.
    let v = native_for(
        &c,
        k,
        json!({"model":"m","input":"e","previous_response_id":r2}),
    );
    assert_eq!(v["messages"].as_array().unwrap().len(), 5);
}

const WEATHER_TOOLS: &str = r#"[{"type":"function","name":"get_weather","parameters":{"type":"object","properties":{"city":{"type":"string"}}}},
    {"type":"namespace","name":"crm","tools":[{"type":"function","name":"lookup"}]}]"#;

/// Thinking, then two calls (one of a namespace member) on the final line.
const THINK_AND_CALL: &str = r#"{"message":{"role":"assistant","content":"","thinking":"I need the weather.","tool_calls":[{"id":"call_w","function":{"name":"get_weather","arguments":{"city":"Oslo"}}},{"id":"call_c","function":{"name":"crm__lookup","arguments":{"id":7}}}]},"done":true,"done_reason":"stop","prompt_eval_count":4,"eval_count":6}"#;

#[test]
fn kept_reasoning_and_function_calls_come_back_as_the_model_s_messages() {
    let c = layer(config());
    let k = owner("k1");
    let tools: Value = serde_json::from_str(WEATHER_TOOLS).unwrap();
    for stream in [false, true] {
        let (r1, out) = turn(
            &c,
            k,
            json!({"model":"m","input":"Weather in Oslo?","tools":tools,"stream":stream,
                "reasoning":{"summary":"auto"},"include":["reasoning.encrypted_content"]}),
            &[THINK_AND_CALL],
        );
        let answered = if stream {
            events(&out).last().unwrap()["response"].clone()
        } else {
            serde_json::from_str(&out).unwrap()
        };
        let kinds: Vec<&str> = answered["output"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["type"].as_str().unwrap())
            .collect();
        assert_eq!(kinds, ["reasoning", "function_call", "function_call"]);
        assert_eq!(answered["output"][2]["namespace"], "crm");

        // The client answers the calls, and only the calls.
        let v = native_for(
            &c,
            k,
            json!({"model":"m","previous_response_id":r1,"tools":tools,"input":[
                {"type":"function_call_output","call_id":"call_w","output":"Rainy"},
                {"type":"function_call_output","call_id":"call_c","output":"{\"name\":\"Ann\"}"}
            ]}),
        );
        assert_eq!(
            v["messages"],
            json!([
                {"role":"user","content":"Weather in Oslo?"},
                {"role":"assistant","content":"","thinking":"I need the weather.","tool_calls":[
                    {"id":"call_w","function":{"name":"get_weather","arguments":{"city":"Oslo"}}},
                    {"id":"call_c","function":{"name":"crm__lookup","arguments":{"id":7}}}
                ]},
                {"role":"tool","content":"Rainy","tool_name":"get_weather","tool_call_id":"call_w"},
                {"role":"tool","content":"{\"name\":\"Ann\"}","tool_name":"crm__lookup","tool_call_id":"call_c"}
            ]),
            "stream: {stream}"
        );
    }
}

/// The proxy made the reasoning item it keeps: when the client did not
/// ask for `encrypted_content`, the kept item has only its summary, and
/// the continuation drops it like any unsigned summary.
#[test]
fn kept_reasoning_comes_back_without_include() {
    let c = layer(config());
    let k = owner("k1");
    let tools: Value = serde_json::from_str(WEATHER_TOOLS).unwrap();
    let (r1, out) = turn(
        &c,
        k,
        json!({"model":"m","input":"Weather in Oslo?","tools":tools,"reasoning":{"summary":"auto"}}),
        &[THINK_AND_CALL],
    );
    let answered: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(answered["output"][0]["type"], "reasoning");
    assert_eq!(
        answered["output"][0]["summary"][0]["text"],
        "I need the weather."
    );
    let v = native_for(
        &c,
        k,
        json!({"model":"m","previous_response_id":r1,"tools":tools,"input":[
            {"type":"function_call_output","call_id":"call_w","output":"Rainy"},
            {"type":"function_call_output","call_id":"call_c","output":"x"}
        ]}),
    );
    assert_eq!(v["messages"][1]["thinking"], "I need the weather.");
}

#[test]
fn store_false_is_never_kept() {
    let c = layer(config());
    let k = owner("k1");
    for stream in [false, true] {
        let body = json!({"model":"m","input":"a","store":false,"stream":stream});
        let parsed =
            parse_request_for(&c, &c.shared, body.to_string().as_bytes(), Some(k)).unwrap();
        assert!(parsed.keep.is_none());
        let (id, _) = turn(&c, k, body, &[&says("b")]);
        assert!(kept_response(&c, &id, k).is_none(), "stream: {stream}");
        assert_not_found(
            &refused(
                &c,
                k,
                json!({"model":"m","input":"c","previous_response_id":id}),
            ),
            &id,
        );
    }
    // A continuation sent with store: false is answered and not kept; what
    // it continued stays.
    let (r1, _) = turn(&c, k, json!({"model":"m","input":"a"}), &[&says("b")]);
    let (r2, _) = turn(
        &c,
        k,
        json!({"model":"m","input":"c","previous_response_id":r1,"store":false}),
        &[&says("d")],
    );
    assert!(kept_response(&c, &r2, k).is_none());
    assert_eq!(kept_items(&c, &r1, k).len(), 2);
    // `store: true` and `store: null` keep.
    for store in [json!(true), Value::Null] {
        let (id, _) = turn(
            &c,
            k,
            json!({"model":"m","input":"a","store":store}),
            &[&says("b")],
        );
        assert!(kept_response(&c, &id, k).is_some(), "store: {store}");
    }
}

#[test]
fn only_completed_and_incomplete_responses_are_kept() {
    let c = layer(config());
    let k = owner("k1");
    let partial = r#"{"message":{"role":"assistant","content":"Partial"},"done":false}"#;
    for stream in [false, true] {
        let body = json!({"model":"m","input":"a","stream":stream});
        // An error line: failed.
        let (id, out) = turn(
            &c,
            k,
            body.clone(),
            &[
                partial,
                r#"{"error":"model runner has unexpectedly stopped"}"#,
            ],
        );
        assert!(out.contains("\"failed\""), "{out}");
        assert!(
            kept_response(&c, &id, k).is_none(),
            "failed, stream {stream}"
        );
        // Garbage from Ollama: failed.
        let (id, out) = turn(&c, k, body.clone(), &[partial, "not json"]);
        assert!(out.contains("\"failed\""), "{out}");
        assert!(
            kept_response(&c, &id, k).is_none(),
            "garbage, stream {stream}"
        );
        // Ollama's stream ends before its final line: failed.
        let (id, out) = turn(&c, k, body.clone(), &[partial]);
        assert!(out.contains("\"failed\""), "{out}");
        assert!(
            kept_response(&c, &id, k).is_none(),
            "cut upstream, stream {stream}"
        );
        // The client goes away mid-answer: the encoder is dropped.
        let parsed =
            parse_request_for(&c, &c.shared, body.to_string().as_bytes(), Some(k)).unwrap();
        let mut enc = ResponseEncoder::new("m", &parsed.echo, stream, None, parsed.namespaced);
        enc.keep = parsed.keep;
        let id = enc.id.clone();
        let mut d = Decoder::new(enc, true);
        d.line(partial.as_bytes(), &mut BytesMut::new());
        drop(d);
        assert!(kept_response(&c, &id, k).is_none(), "cut by the client");
        // Cut by the length limit: incomplete, kept.
        let length = r#"{"message":{"role":"assistant","content":" more"},"done":true,"done_reason":"length","prompt_eval_count":1,"eval_count":2}"#;
        let (id, _) = turn(&c, k, body.clone(), &[partial, length]);
        let kept = kept_response(&c, &id, k).expect("an incomplete response is kept");
        assert_eq!(kept["status"], "incomplete");
        assert_eq!(output_text(&kept), "Partial more");
        let v = native_for(
            &c,
            k,
            json!({"model":"m","input":"go on","previous_response_id":id}),
        );
        assert_eq!(
            v["messages"][1],
            json!({"role":"assistant","content":"Partial more"})
        );
    }
}

#[test]
fn the_kept_response_is_the_one_the_client_got() {
    let c = layer(config());
    let k = owner("k1");
    let tools: Value = serde_json::from_str(WEATHER_TOOLS).unwrap();
    let bodies = [
        json!({"model":"m","input":"a","instructions":"x","metadata":{"k":"v"}}),
        json!({"model":"m","input":"a","tools":tools,"include":["reasoning.encrypted_content"],
            "reasoning":{"summary":"auto"}}),
    ];
    let lines: [&[&str]; 2] = [&[THINK1, TEXT1, TEXT2, DONE], &[THINK_AND_CALL]];
    for (body, lines) in bodies.iter().zip(lines) {
        for stream in [false, true] {
            let mut body = body.clone();
            body["stream"] = json!(stream);
            let (id, out) = turn(&c, k, body, lines);
            let got = if stream {
                let ev = events(&out);
                assert_eq!(ev.last().unwrap()["type"], "response.completed");
                ev.last().unwrap()["response"].clone()
            } else {
                serde_json::from_str(&out).unwrap()
            };
            assert_eq!(kept_response(&c, &id, k).unwrap(), got, "stream: {stream}");
        }
    }
}

#[test]
fn continuations_may_branch() {
    let c = layer(config());
    let k = owner("k1");
    let (r1, _) = turn(&c, k, json!({"model":"m","input":"root"}), &[&says("r")]);
    let (a, _) = turn(
        &c,
        k,
        json!({"model":"m","input":"left","previous_response_id":r1}),
        &[&says("L")],
    );
    let (b, _) = turn(
        &c,
        k,
        json!({"model":"m","input":"right","previous_response_id":r1}),
        &[&says("R")],
    );
    let texts = |id: &str| -> Vec<String> {
        native_for(
            &c,
            k,
            json!({"model":"m","input":"end","previous_response_id":id}),
        )["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["content"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(texts(&a), ["root", "r", "left", "L", "end"]);
    assert_eq!(texts(&b), ["root", "r", "right", "R", "end"]);
}

/// `GET` and `DELETE /v1/responses/{id}` as the layer routes them, for
/// `owner`.
fn kept_request(c: &Layer, method: Method, path: &str, owner: Owner) -> Result<Value, ApiError> {
    let d = crate::dialect::route(&method, path).expect("routed");
    let (parts, ()) = http::Request::builder()
        .method(method)
        .uri(path)
        .extension(owner)
        .body(())
        .unwrap()
        .into_parts();
    let up = d.prepare(c, &c.shared, &parts, b"")?;
    let local = up.local.expect("answered by the layer");
    Ok(serde_json::from_slice(&local).unwrap())
}

#[test]
fn get_returns_and_delete_forgets_a_kept_response() {
    let c = layer(config());
    let (k1, k2) = (owner("k1"), owner("k2"));
    let (r1, out) = turn(&c, k1, json!({"model":"m","input":"a"}), &[&says("b")]);
    let got: Value = serde_json::from_str(&out).unwrap();
    let path = format!("/v1/responses/{r1}");
    assert_eq!(kept_request(&c, Method::GET, &path, k1).unwrap(), got);
    assert_eq!(
        kept_request(&c, Method::GET, &format!("{path}/"), k1).unwrap(),
        got,
        "a trailing slash"
    );
    for (method, who) in [(Method::GET, k2), (Method::DELETE, k2)] {
        let e = kept_request(&c, method.clone(), &path, who).unwrap_err();
        assert_eq!(e.status, 404, "{method} by another key");
        assert_eq!(e.code, Some("response_not_found"));
        assert!(e.message.contains(&r1));
    }
    assert_eq!(
        kept_request(&c, Method::GET, &path, k1).unwrap(),
        got,
        "another key's DELETE left it"
    );
    assert_eq!(
        kept_request(&c, Method::DELETE, &path, k1).unwrap(),
        json!({"id":r1,"object":"response","deleted":true})
    );
    for method in [Method::GET, Method::DELETE] {
        let e = kept_request(&c, method, &path, k1).unwrap_err();
        assert_eq!(e.status, 404);
    }
    assert_not_found(
        &refused(
            &c,
            k1,
            json!({"model":"m","input":"c","previous_response_id":r1}),
        ),
        &r1,
    );
    let e = kept_request(&c, Method::GET, "/v1/responses/resp_nosuch", k1).unwrap_err();
    assert_eq!(e.status, 404);
    // Not routed: the collection itself, and POST to an id.
    assert!(crate::dialect::route(&Method::GET, "/v1/responses").is_none());
    assert!(crate::dialect::route(&Method::GET, "/v1/responses/").is_none());
    assert!(crate::dialect::route(&Method::POST, &path).is_none());
}

#[test]
fn a_kept_custom_tool_call_comes_back_as_the_call_of_its_input() {
    let c = layer(config());
    let k = owner("k1");
    let tools = json!([{"type":"custom","name":"apply_patch","description":"Patch files."}]);
    let call = r#"{"message":{"role":"assistant","content":"","tool_calls":[{"id":"call_p","function":{"name":"apply_patch","arguments":{"input":"*** Begin Patch\n*** End Patch"}}}]},"done":true,"done_reason":"stop","prompt_eval_count":4,"eval_count":6}"#;
    let (r1, out) = turn(
        &c,
        k,
        json!({"model":"m","input":"patch it","tools":tools}),
        &[call],
    );
    let answered: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        answered["output"][0]["type"], "custom_tool_call",
        "{answered}"
    );
    assert_eq!(
        answered["output"][0]["input"],
        "*** Begin Patch\n*** End Patch"
    );
    assert_eq!(kept_items(&c, &r1, k)[1], answered["output"][0]);
    // The output alone goes back, without the tools this time.
    let v = native_for(
        &c,
        k,
        json!({"model":"m","previous_response_id":r1,"input":[
            {"type":"custom_tool_call_output","call_id":"call_p","output":"Done"}]}),
    );
    assert_eq!(
        v["messages"],
        json!([
            {"role":"user","content":"patch it"},
            {"role":"assistant","content":"","tool_calls":[{"id":"call_p","function":
                {"name":"apply_patch","arguments":{"input":"*** Begin Patch\n*** End Patch"}}}]},
            {"role":"tool","content":"Done","tool_name":"apply_patch","tool_call_id":"call_p"}
        ])
    );
    assert!(v.get("tools").is_none(), "turn 1's tools are not kept");
}

#[test]
fn tools_the_kept_conversation_loaded_or_added_are_offered_on_a_continuation() {
    let c = layer(config());
    let k = owner("k1");
    // A tool search answered in turn 1 loaded mcp__docs__search; an
    // additional_tools item offered `extra`.
    let (r1, _) = turn(
        &c,
        k,
        tool_search_body(json!([
            {"type":"additional_tools","role":"developer","tools":[
                {"type":"function","name":"extra","parameters":{"type":"object"}}]},
            {"role":"user","content":"find the docs tool"},
            {"type":"tool_search_call","call_id":"ts1","arguments":{"query":"docs"}},
            {"type":"tool_search_output","call_id":"ts1","tools":[
                {"type":"namespace","name":"mcp__docs__","tools":[
                    {"type":"function","name":"search","parameters":{"type":"object"}}]}]}
        ])),
        &[&says("Loaded.")],
    );
    let mut body = tool_search_body(json!("now search"));
    body["previous_response_id"] = json!(r1);
    let parsed = parse_request_for(&c, &c.shared, body.to_string().as_bytes(), Some(k)).unwrap();
    assert_eq!(
        offered(&parsed),
        ["exec_command", "tool_search", "extra", "mcp__docs__search"]
    );
    assert_eq!(
        parsed.namespaced.get("mcp__docs__search"),
        Some(&("mcp__docs__".to_string(), "search".to_string()))
    );
    // Without tools of its own, the continuation still offers the kept ones.
    let parsed = parse_request_for(
        &c,
        &c.shared,
        json!({"model":"m","previous_response_id":r1,"input":"again"})
            .to_string()
            .as_bytes(),
        Some(k),
    )
    .unwrap();
    assert_eq!(offered(&parsed), ["extra", "mcp__docs__search"]);
}
