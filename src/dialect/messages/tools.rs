//! The tools a Messages request offers: client tools, tool references
//! and the server tools the layer runs (`web_search_*`).

use super::*;

/// `tools`: custom tools become function tools; the web-search server tool
/// (`web_search_…`) becomes the `web_search` function the layer runs
/// (`search` says what it asks), unless the layer's search is off; other
/// Anthropic-defined tools (`web_fetch_…`, `bash_…`, …) are dropped. A tool
/// with `defer_loading: true` is kept aside unless `loaded` names it (a
/// `tool_reference` in the conversation loaded it) or the request carries
/// one of Anthropic's server tool-search tools (`tool_search_tool_regex_…`,
/// `tool_search_tool_bm25_…`): the proxy cannot run those, so without them
/// nothing could ever load a deferred tool.
pub(super) fn parse_tools(
    config: &Config,
    v: Option<Value>,
    search: &mut Option<SearchTool>,
    loaded: &HashSet<String>,
) -> Result<Vec<Value>, ApiError> {
    let tools = match v {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(a)) => a,
        Some(v) => return Err(Wording::Bare.wrong_type("tools", "an array", &v)),
    };
    // Each function tool, and whether it waits to be loaded.
    let mut parsed = Vec::with_capacity(tools.len());
    let mut server_search = false;
    for (i, tool) in tools.into_iter().enumerate() {
        let Value::Object(mut tool) = tool else {
            return Err(ApiError::invalid(
                format!("tools.{i}"),
                "each tool must be an object",
            ));
        };
        match tool.get("type").and_then(Value::as_str) {
            None | Some("custom") => {}
            Some(kind) => {
                server_search |= kind.starts_with("tool_search_tool");
                if let Some(function) = server_tool(config, kind, &tool, i, search)? {
                    parsed.push((false, function));
                }
                continue;
            }
        }
        let name = match tool.remove("name") {
            Some(Value::String(n)) if !n.is_empty() => n,
            _ => return Err(Wording::Bare.required(&format!("tools.{i}.name"))),
        };
        if name == search::FUNCTION && config.web_search.is_enabled() {
            return Err(ApiError::invalid(
                format!("tools.{i}.name"),
                "a tool named \"web_search\" clashes with the web search this proxy runs: rename it",
            ));
        }
        let waits = tool.get("defer_loading").and_then(Value::as_bool) == Some(true)
            && !loaded.contains(&name);
        parsed.push((
            waits,
            function_tool(
                name,
                tool.remove("description"),
                tool.remove("input_schema"),
                |v| Wording::Bare.wrong_type(&format!("tools.{i}.input_schema"), "an object", v),
            )?,
        ));
    }
    let waiting = parsed.iter().filter(|(waits, _)| *waits).count();
    if waiting > 0 {
        tracing::debug!(
            waiting,
            server_search,
            "deferred tools not loaded by a tool_reference"
        );
    }
    Ok(parsed
        .into_iter()
        .filter(|(waits, _)| !waits || server_search)
        .map(|(_, tool)| tool)
        .collect())
}

/// Tool search, read before the messages: each `tool_reference` block in a
/// `tool_result`'s content (the only place Anthropic takes one) becomes a
/// text block naming the tool it loaded and quoting its description
/// ([`params::tool_loaded_text`]), or saying the request carries no such tool
/// ([`params::tool_missing_text`]), never an error. Returns the names of the
/// request's custom tools the references load.
pub(super) fn load_tool_references(
    messages: Option<&mut Value>,
    tools: Option<&Value>,
) -> Result<HashSet<String>, ApiError> {
    let mut loaded = HashSet::new();
    let Some(Value::Array(messages)) = messages else {
        return Ok(loaded);
    };
    // name → description of every custom tool.
    let catalog: HashMap<&str, Option<&str>> = tools
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|t| matches!(t.get("type").and_then(Value::as_str), None | Some("custom")))
        .filter_map(|t| {
            let name = t.get("name").and_then(Value::as_str)?;
            Some((name, t.get("description").and_then(Value::as_str)))
        })
        .collect();
    for (i, m) in messages.iter_mut().enumerate() {
        let Some(Value::Array(blocks)) = m.get_mut("content") else {
            continue;
        };
        for (j, block) in blocks.iter_mut().enumerate() {
            if block_type(block) != "tool_result" {
                continue;
            }
            let Some(Value::Array(parts)) = block.get_mut("content") else {
                continue;
            };
            for (k, part) in parts.iter_mut().enumerate() {
                if block_type(part) != "tool_reference" {
                    continue;
                }
                let name = match part.get("tool_name") {
                    Some(Value::String(n)) if !n.is_empty() => n.as_str(),
                    _ => {
                        return Err(ApiError::invalid(
                            format!("messages.{i}.content.{j}.content.{k}.tool_name"),
                            "Field required",
                        ))
                    }
                };
                let text = match catalog.get(name) {
                    Some(description) => {
                        loaded.insert(name.to_string());
                        params::tool_loaded_text(name, *description)
                    }
                    None => {
                        tracing::debug!(
                            tool = name,
                            "a tool_reference names no tool of the request"
                        );
                        params::tool_missing_text(name)
                    }
                };
                *part = json!({"type": "text", "text": text});
            }
        }
    }
    Ok(loaded)
}

/// An Anthropic-defined tool at `tools.{i}`: the web-search function for a
/// `web_search_*` tool (recorded in `search`), or `None` for one the layer
/// drops.
pub(super) fn server_tool(
    config: &Config,
    kind: &str,
    tool: &Map<String, Value>,
    i: usize,
    search: &mut Option<SearchTool>,
) -> Result<Option<Value>, ApiError> {
    if !kind.starts_with("web_search_") {
        if kind.starts_with("web_fetch_") {
            tracing::info!(kind, "dropping the web_fetch server tool: the proxy never fetches a URL a client or a model names");
        } else {
            tracing::debug!(kind, "dropping an Anthropic-defined tool Ollama cannot run");
        }
        return Ok(None);
    }
    if !config.web_search.is_enabled() {
        tracing::debug!(kind, "dropping the web search tool: web search is off");
        return Ok(None);
    }
    let p = |field: &str| format!("tools.{i}.{field}");
    let max_uses = match tool.get("max_uses") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_u64() {
            Some(n) if n >= 1 => Some(u32::try_from(n).unwrap_or(u32::MAX)),
            _ => {
                return Err(ApiError::invalid(
                    p("max_uses"),
                    "must be a positive integer",
                ))
            }
        },
    };
    let domains = |field: &str| -> Result<Vec<String>, ApiError> {
        match tool.get(field) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(a)) => a
                .iter()
                .map(|d| {
                    d.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| ApiError::invalid(p(field), "must be an array of strings"))
                })
                .collect(),
            Some(_) => Err(ApiError::invalid(p(field), "must be an array of strings")),
        }
    };
    let allowed_domains = domains("allowed_domains")?;
    let blocked_domains = domains("blocked_domains")?;
    if !allowed_domains.is_empty() && !blocked_domains.is_empty() {
        return Err(ApiError::invalid(
            p("allowed_domains"),
            "allowed_domains and blocked_domains cannot both be set",
        ));
    }
    let location = tool.get("user_location").and_then(location_text);
    *search = Some(SearchTool {
        max_uses,
        allowed_domains,
        blocked_domains,
    });
    Ok(Some(search::function(location.as_deref())))
}

/// `user_location` (`city`, `region`, `country`, `timezone`) as text.
pub(super) fn location_text(v: &Value) -> Option<String> {
    let parts: Vec<&str> = ["city", "region", "country"]
        .iter()
        .filter_map(|k| v.get(*k).and_then(Value::as_str))
        .filter(|s| !s.trim().is_empty())
        .collect();
    let mut text = parts.join(", ");
    if let Some(tz) = v.get("timezone").and_then(Value::as_str) {
        if !text.is_empty() {
            text.push(' ');
        }
        text.push_str(&format!("(time zone {tz})"));
    }
    (!text.is_empty()).then_some(text)
}
