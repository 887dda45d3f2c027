//! The window's commands, in one table.
//!
//! The page calls commands by name with a JSON object of arguments
//! (`invoke("select_site", {id})`). [`run`] is the only place that maps a
//! name to what the controller does, so the commands behave the same whether
//! the page's webview lives in the process that holds the controller or asks
//! it from another process. [`handler`] is the Tauri side: one invoke handler
//! for every command name, answering with what [`run`] returns.

use crate::controller::Controller;
use crate::settings::{Editable, NewSite};
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::sync::Arc;
use tauri::ipc::{Invoke, InvokeBody, InvokeError};
use tauri::{AppHandle, Manager, Runtime};

/// Every command the page may call.
pub const NAMES: &[&str] = &[
    "snapshot",
    "set_joined",
    "get_settings",
    "save_settings",
    "sites",
    "select_site",
    "add_site",
    "remove_site",
    "set_tray_site",
    "history",
    "tray_state",
    "quit",
];

/// Runs the command `name` with `args` (the object the page passed) against
/// the controller. The error is the text the page shows: it says what to fix.
///
/// `quit` leaves the channel, stops the embedded server and exits the app
/// (as the tray's Quit).
pub async fn run<R: Runtime>(
    app: &AppHandle<R>,
    c: &Arc<Controller>,
    name: &str,
    args: &Value,
) -> Result<Value, String> {
    let c = c.clone();
    match name {
        // Everything for the window's first paint.
        "snapshot" => Ok(c.snapshot()),
        // Join (true) or leave (false) the channel.
        "set_joined" => c.set_joined(arg(args, "joined")?).await,
        // The settings panel's fields.
        "get_settings" => json(c.settings()),
        // Validate, store and apply settings.
        "save_settings" => c.save_settings(arg::<Editable>(args, "settings")?).await,
        // Every site with its count, the shown one marked.
        "sites" => Ok(c.sites()),
        // Shows another site in the window.
        "select_site" => c.select_site(&arg::<String>(args, "id")?).await,
        "add_site" => c.add_site(arg::<NewSite>(args, "site")?).await,
        // Removes a site (not the last one).
        "remove_site" => c.remove_site(&arg::<String>(args, "id")?).await,
        // The tray counts one site (`id`), or all of them (`null`).
        "set_tray_site" => c.set_tray_site(optional(args, "id")?),
        // The chart's data: the last 24 hours per minute and today's peak.
        "history" => Ok(c.history()),
        // What the tray shows (for tests and diagnostics).
        "tray_state" => json(c.tray_model()),
        "quit" => {
            c.shutdown().await;
            app.exit(0);
            Ok(Value::Null)
        }
        other => Err(format!("unknown command \"{other}\"")),
    }
}

/// The named argument, which must be there.
fn arg<T: DeserializeOwned>(args: &Value, name: &str) -> Result<T, String> {
    let value = args
        .get(name)
        .ok_or_else(|| format!("the command needs the argument \"{name}\""))?;
    serde_json::from_value(value.clone()).map_err(|e| format!("argument \"{name}\": {e}"))
}

/// The named argument, where missing and `null` both mean none.
fn optional<T: DeserializeOwned>(args: &Value, name: &str) -> Result<Option<T>, String> {
    match args.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(_) => arg(args, name).map(Some),
    }
}

fn json(value: impl serde::Serialize) -> Result<Value, String> {
    serde_json::to_value(value).map_err(|e| e.to_string())
}

/// The arguments of an invoke as JSON (an empty object when it sent none).
pub fn args_of(body: &InvokeBody) -> Value {
    match body {
        InvokeBody::Json(v) if !v.is_null() => v.clone(),
        _ => Value::Object(Default::default()),
    }
}

/// The invoke handler for a process that holds the controller: each of
/// [`NAMES`] goes to [`run`]; other names are not handled (Tauri answers
/// that the command is not found).
pub fn handler<R: Runtime>() -> impl Fn(Invoke<R>) -> bool + Send + Sync + 'static {
    move |invoke: Invoke<R>| {
        let name = invoke.message.command().to_owned();
        if !NAMES.contains(&name.as_str()) {
            return false;
        }
        let app = invoke.message.webview().app_handle().clone();
        let args = args_of(invoke.message.payload());
        invoke.resolver.respond_async(async move {
            let Some(c) = app
                .try_state::<Arc<Controller>>()
                .map(|s| s.inner().clone())
            else {
                return Err(InvokeError::from("the app is still starting"));
            };
            run(&app, &c, &name, &args).await.map_err(InvokeError::from)
        });
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn arguments_are_named_and_typed() {
        let args = json!({"id": "site-1", "joined": true, "none": null});
        assert_eq!(arg::<String>(&args, "id").unwrap(), "site-1");
        assert!(arg::<bool>(&args, "joined").unwrap());
        assert_eq!(
            arg::<bool>(&args, "missing").unwrap_err(),
            "the command needs the argument \"missing\""
        );
        assert!(arg::<bool>(&args, "id")
            .unwrap_err()
            .starts_with("argument \"id\": invalid type"));
        assert_eq!(optional::<String>(&args, "none").unwrap(), None);
        assert_eq!(optional::<String>(&args, "missing").unwrap(), None);
        assert_eq!(
            optional::<String>(&args, "id").unwrap().as_deref(),
            Some("site-1")
        );
    }

    #[test]
    fn no_arguments_read_as_an_empty_object() {
        assert_eq!(args_of(&InvokeBody::Json(Value::Null)), json!({}));
        assert_eq!(args_of(&InvokeBody::Raw(vec![1, 2])), json!({}));
        assert_eq!(
            args_of(&InvokeBody::Json(json!({"id": "a"}))),
            json!({"id": "a"})
        );
    }
}
