//! The tools a Responses request offers (functions, namespaces, custom
//! tools, `tool_search`, `web_search`) as native functions.

use super::*;

/// The name a call item (`kind`) at `p` was offered to the model under: its
/// `name`, flattened with its `namespace` when it has one.
pub(super) fn call_name(
    item: &Map<String, Value>,
    p: &str,
    kind: &str,
) -> Result<String, ApiError> {
    let name = item
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| {
            ApiError::invalid(format!("{p}.name"), format!("a {kind} item needs a name"))
        })?;
    Ok(
        match item
            .get("namespace")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
        {
            Some(ns) => flat_name(ns, name),
            None => name.to_string(),
        },
    )
}

/// The name a namespace member is offered to the model under.
pub(crate) fn flat_name(namespace: &str, name: &str) -> String {
    format!(
        "{}__{}",
        namespace.trim_end_matches('_'),
        name.trim_start_matches('_')
    )
}

/// One function tool (Responses' flat shape, or Chat's nested one) as a
/// native tool named `name`.
pub(super) fn native_function(tool: &Value, name: &str, param: &str) -> Result<Value, ApiError> {
    let src = match tool.get("function") {
        Some(f @ Value::Object(_)) => f,
        _ => tool,
    };
    function_tool(
        name,
        src.get("description").cloned(),
        src.get("parameters").cloned(),
        |v| {
            ApiError::invalid(
                format!("{param}.parameters"),
                format!(
                    "function parameters must be a JSON Schema object, got {}",
                    type_name(v)
                ),
            )
        },
    )
}

pub(super) fn function_name<'a>(tool: &'a Value, param: &str) -> Result<&'a str, ApiError> {
    tool.get("name")
        .or_else(|| tool.get("function").and_then(|f| f.get("name")))
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ApiError::invalid(format!("{param}.name"), "a function tool needs a name"))
}

/// The name the model calls a client-run `tool_search` by (Codex's own name
/// for it).
pub(crate) const TOOL_SEARCH: &str = "tool_search";

/// The description of a client-run `tool_search` that has none.
pub(super) const TOOL_SEARCH_DESCRIPTION: &str =
    "Searches for tools that are not loaded yet; the tools found can be called afterwards.";

/// One function a `function`, `custom` or `namespace` tool offers.
pub(super) struct Function {
    /// The native tool, named `flat`.
    pub(super) native: Value,
    /// The name the model sees (namespace members flattened).
    pub(super) flat: String,
    /// (namespace, member name), for a namespace member.
    pub(super) member: Option<(String, String)>,
    pub(super) description: Option<String>,
    /// `defer_loading: true` on it or on its namespace.
    pub(super) deferred: bool,
    /// A custom (freeform) tool: offered as a function of one string,
    /// `input` (see [`custom_function`]).
    pub(super) custom: bool,
}

pub(super) fn deferred(tool: &Value) -> bool {
    tool.get("defer_loading").and_then(Value::as_bool) == Some(true)
}

/// The functions of one `function`, `custom` or `namespace` tool at
/// `param`, appended to `out`; other kinds add nothing.
pub(super) fn functions(
    tool: &Value,
    param: &str,
    out: &mut Vec<Function>,
) -> Result<(), ApiError> {
    match tool
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("function")
    {
        kind @ ("function" | "custom") => {
            let name = function_name(tool, param)?;
            let custom = kind == "custom";
            out.push(Function {
                native: if custom {
                    custom_function(tool, name)
                } else {
                    native_function(tool, name, param)?
                },
                flat: name.to_string(),
                member: None,
                description: description(tool),
                deferred: deferred(tool),
                custom,
            });
        }
        "namespace" => {
            let Some(ns) = tool
                .get("name")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
            else {
                return Err(ApiError::invalid(
                    format!("{param}.name"),
                    "a namespace tool needs a name",
                ));
            };
            let members = tool.get("tools").and_then(Value::as_array);
            for (j, member) in members.into_iter().flatten().enumerate() {
                let mparam = format!("{param}.tools[{j}]");
                let kind = member
                    .get("type")
                    .and_then(Value::as_str)
                    .unwrap_or("function");
                if kind != "function" && kind != "custom" {
                    tracing::debug!(
                        namespace = ns,
                        kind,
                        "dropping a namespace member Ollama cannot run"
                    );
                    continue;
                }
                let custom = kind == "custom";
                let name = function_name(member, &mparam)?;
                let flat = flat_name(ns, name);
                out.push(Function {
                    native: if custom {
                        custom_function(member, &flat)
                    } else {
                        native_function(member, &flat, &mparam)?
                    },
                    member: Some((ns.to_string(), name.to_string())),
                    flat,
                    description: description(member),
                    deferred: deferred(tool) || deferred(member),
                    custom,
                });
            }
        }
        kind => tracing::debug!(kind, "dropping a tool kind Ollama cannot run"),
    }
    Ok(())
}

pub(super) fn description(tool: &Value) -> Option<String> {
    tool.get("description")
        .or_else(|| tool.get("function").and_then(|f| f.get("description")))
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// The one argument a custom tool's function takes.
pub(super) const CUSTOM_INPUT: &str = "input";

/// A custom (freeform) tool as the native function `name` of one string,
/// `input`. The model reads the tool's own description, then how to call
/// it and the format its text must have (a `grammar` format's definition,
/// quoted whole), so it writes that syntax inside the string.
pub(super) fn custom_function(tool: &Value, name: &str) -> Value {
    let mut text = description(tool)
        .map(|d| d.trim_end().to_string())
        .unwrap_or_default();
    if !text.is_empty() {
        text.push_str("\n\n");
    }
    text.push_str(
        "This tool takes free-form text, not JSON arguments. Call it with one argument, \
         `input`: a string holding the whole text, exactly as the tool reads it.",
    );
    let format = tool.get("format");
    let definition = format
        .filter(|f| f.get("type").and_then(Value::as_str) == Some("grammar"))
        .and_then(|f| f.get("definition"))
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|d| !d.is_empty());
    if let (Some(format), Some(definition)) = (format, definition) {
        match format.get("syntax").and_then(Value::as_str) {
            Some("regex") => text.push_str("\nThe text must match this regular expression:\n"),
            Some(syntax) => {
                text.push_str("\nThe text must follow this ");
                text.push_str(syntax);
                text.push_str(" grammar:\n");
            }
            None => text.push_str("\nThe text must follow this grammar:\n"),
        }
        text.push_str(definition);
    }
    as_tool(json!({
        "name": name,
        "description": text,
        "parameters": {
            "type": "object",
            "properties": {CUSTOM_INPUT: {"type": "string", "description": "The tool's whole input text."}},
            "required": [CUSTOM_INPUT],
        },
    }))
}

/// The tools a request offers, each with the param that names it: `tools`,
/// then the `tools` of each `additional_tools` item of the conversation's
/// `input` (a continuation's included; Codex sends its tools that way for
/// models it drives with `use_responses_lite`, and no top-level `tools`),
/// offered as if they were top-level.
pub(super) fn tool_entries<'a>(
    tools: Option<&'a Value>,
    input: Option<&'a Value>,
) -> Result<Vec<(String, &'a Value)>, ApiError> {
    let mut entries: Vec<(String, &Value)> = optional_array(tools, "tools", Wording::Named)?
        .iter()
        .enumerate()
        .map(|(i, t)| (format!("tools[{i}]"), t))
        .collect();
    let items = input.and_then(Value::as_array);
    for (i, item) in items.into_iter().flatten().enumerate() {
        if item.get("type").and_then(Value::as_str) != Some("additional_tools") {
            continue;
        }
        let param = format!("input[{i}].tools");
        let tools = optional_array(item.get("tools"), &param, Wording::Named)?;
        entries.extend(
            tools
                .iter()
                .enumerate()
                .map(|(j, t)| (format!("{param}[{j}]"), t)),
        );
    }
    Ok(entries)
}

/// What [`parse_tools`] makes of the tools offered.
pub(super) struct Tools {
    /// The native tools.
    pub(super) native: Vec<Value>,
    /// Flat name → (namespace, member name).
    pub(super) namespaced: HashMap<String, (String, String)>,
    /// Flat names of custom (freeform) tools.
    pub(super) custom: HashSet<String>,
    /// A client-run `tool_search` is offered.
    pub(super) client_search: bool,
}

/// The tools ([`tool_entries`]): function tools, custom tools (as functions
/// of one string, [`custom_function`]) and those inside `namespace` groups
/// are mapped; a `tool_search` the client runs (`execution: "client"`)
/// becomes the function [`TOOL_SEARCH`] with its own description and
/// parameters; every other kind is dropped. Functions with `defer_loading:
/// true` wait for a `tool_search_output` to load them when the client runs
/// the search; without one (a hosted `tool_search` cannot run here, or there
/// is none) nothing could load them, so they are offered at once.
pub(super) fn parse_tools(entries: &[(String, &Value)]) -> Result<Tools, ApiError> {
    let mut found = Vec::new();
    let mut client_search = false;
    for (param, tool) in entries {
        let (param, tool) = (param.as_str(), *tool);
        if tool.get("type").and_then(Value::as_str) != Some("tool_search") {
            functions(tool, param, &mut found)?;
            continue;
        }
        if tool.get("execution").and_then(Value::as_str) != Some("client") {
            tracing::debug!("dropping a hosted tool_search Ollama cannot run");
            continue;
        }
        if client_search {
            continue;
        }
        client_search = true;
        let parameters = tool
            .get("parameters")
            .cloned()
            .unwrap_or_else(|| json!({"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]}));
        let native = function_tool(
            TOOL_SEARCH,
            Some(
                tool.get("description")
                    .cloned()
                    .unwrap_or_else(|| Value::from(TOOL_SEARCH_DESCRIPTION)),
            ),
            Some(parameters),
            |v| {
                Wording::Named.wrong_type(&format!("{param}.parameters"), "a JSON Schema object", v)
            },
        )?;
        found.push(Function {
            native,
            flat: TOOL_SEARCH.to_string(),
            member: None,
            description: None,
            deferred: false,
            custom: false,
        });
    }
    let mut out = Vec::with_capacity(found.len());
    let mut namespaced = HashMap::new();
    let mut custom = HashSet::new();
    let mut waiting = 0;
    for f in found {
        if f.deferred && client_search {
            waiting += 1;
            continue;
        }
        if f.custom {
            custom.insert(f.flat.clone());
        }
        if let Some(member) = f.member {
            namespaced.insert(f.flat, member);
        }
        out.push(f.native);
    }
    if waiting > 0 {
        tracing::debug!(waiting, "deferred tools wait for a tool_search_output");
    }
    Ok(Tools {
        native: out,
        namespaced,
        custom,
        client_search,
    })
}
