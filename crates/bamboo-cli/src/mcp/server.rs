//! The MCP handler of one connection: its root session (created at
//! `initialize`, titled with the client's name, or `--root`), its tools,
//! resources and subscriptions, and the background tasks that push
//! approvals and resource updates to the client while it is connected.

use std::borrow::Cow;
use std::sync::Arc;

use bamboo_engine::NewRoot;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, Implementation, InitializeRequestParams,
    InitializeResult, ListResourceTemplatesResult, ListResourcesResult, ListToolsResult,
    PaginatedRequestParams, ProtocolVersion, ReadResourceRequestParams, ReadResourceResponse,
    ServerCapabilities, ServerConfig, SubscribeRequestParams, UnsubscribeRequestParams,
};
use rmcp::service::{ElicitationMode, NotificationContext, RequestContext};
use rmcp::{ErrorData, RoleServer, ServerHandler};
use serde_json::{json, Value};
use tokio::sync::OnceCell;
use tokio_util::sync::CancellationToken;

use super::engine::Shared;
use super::resources::Subscriptions;
use super::{approvals, resources, tools, wait};

/// The newest protocol revision this server implements. The 2026-07-28
/// revision drops server-to-client requests (elicitation) and
/// `resources/subscribe`, which this server relies on; clients that know
/// it negotiate down to this one.
const PROTOCOL: ProtocolVersion = ProtocolVersion::V_2025_11_25;

/// What a client learns at `initialize` about how to use the server.
const INSTRUCTIONS: &str = "Bamboo fleet: run sub-agents as isolated worker processes. Use the SubAgent tool (action=create with auto_run) to start children, wait to block until they end, SubAgent action=get for a child's result, and approvals to answer their requests for gated actions. Each child's transcript and events are resources at bamboo://sessions/<id> and bamboo://sessions/<id>/events.";

/// One connection's handler (cheap to clone; clones share the connection).
#[derive(Debug, Clone)]
pub struct FleetServer {
    shared: Arc<Shared>,
    conn: Arc<Connection>,
}

/// State of one MCP connection.
#[derive(Debug)]
struct Connection {
    root: OnceCell<String>,
    subscriptions: Subscriptions,
    /// Ends the connection's background tasks when the connection ends.
    stop: CancellationToken,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl FleetServer {
    /// A handler for a new connection.
    pub fn new(shared: Arc<Shared>) -> Self {
        Self {
            shared,
            conn: Arc::new(Connection {
                root: OnceCell::new(),
                subscriptions: Subscriptions::default(),
                stop: CancellationToken::new(),
            }),
        }
    }

    /// The connection's root: `--root`, or a new root titled `client`.
    async fn open_root(&self, client: &str) -> Result<&String, ErrorData> {
        self.conn
            .root
            .get_or_try_init(|| async {
                if let Some(root) = &self.shared.root {
                    return Ok(root.clone());
                }
                let title = if client.trim().is_empty() {
                    "MCP client"
                } else {
                    client
                };
                let mut new_root = NewRoot::new(title);
                new_root.model = self.shared.model.clone();
                new_root.workspace = Some(self.shared.workspace.clone());
                let root = self
                    .shared
                    .engine
                    .create_root_with(new_root)
                    .await
                    .map_err(|e| {
                        ErrorData::internal_error(format!("cannot create the root session: {e}"), None)
                    })?;
                tracing::info!(root = %root.id, client = %title, "MCP connection opened a root session");
                Ok(root.id)
            })
            .await
    }

    fn root(&self) -> Result<&String, ErrorData> {
        self.conn.root.get().ok_or_else(|| {
            ErrorData::invalid_request("initialize the session before calling tools", None)
        })
    }

    async fn call(
        &self,
        name: &str,
        args: Value,
        context: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::CallToolResult, ErrorData> {
        let root = self.root()?.clone();
        let engine = &self.shared.engine;
        Ok(match name {
            tools::SUBAGENT => {
                let out = bamboo_engine::tool::call(engine, &root, args).await;
                let failed = out["success"] != true;
                tools::result(out, failed)
            }
            tools::WAIT => {
                let args = match serde_json::from_value::<wait::WaitArgs>(args) {
                    Ok(a) => a,
                    Err(e) => {
                        return Ok(tools::failure(format!(
                            "invalid wait arguments: {e}; see the tool's schema"
                        )))
                    }
                };
                let progress = context
                    .meta
                    .get_progress_token()
                    .map(|token| wait::Progress {
                        peer: context.peer.clone(),
                        token,
                    });
                match wait::wait(engine, &root, args, progress, context.ct.clone()).await {
                    Ok(v) => tools::result(json!({"success": true, "result": v}), false),
                    Err(why) => tools::failure(why),
                }
            }
            tools::APPROVALS => match serde_json::from_value::<approvals::ApprovalsArgs>(args) {
                Err(e) => tools::failure(format!(
                    "invalid approvals arguments: {e}; see the tool's schema"
                )),
                Ok(a) => match approvals::call(engine, &root, a) {
                    Ok(v) => tools::result(json!({"success": true, "result": v}), false),
                    Err(why) => tools::failure(why),
                },
            },
            other => {
                return Err(ErrorData::invalid_params(
                    format!(
                        "no tool named {other:?}: tools/list names SubAgent, wait and approvals"
                    ),
                    None,
                ))
            }
        })
    }
}

impl ServerHandler for FleetServer {
    fn get_info(&self) -> ServerConfig {
        let capabilities = ServerCapabilities::builder()
            .enable_tools()
            .enable_resources()
            .enable_resources_subscribe()
            .build();
        InitializeResult::new(capabilities)
            .with_protocol_version(PROTOCOL)
            .with_server_info(Implementation::new(
                "bamboo-fleet",
                env!("CARGO_PKG_VERSION"),
            ))
            .with_instructions(INSTRUCTIONS)
    }

    fn supported_protocol_versions(&self) -> Cow<'static, [ProtocolVersion]> {
        Cow::Borrowed(ProtocolVersion::known_up_to(&PROTOCOL))
    }

    async fn initialize(
        &self,
        request: InitializeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<InitializeResult, ErrorData> {
        context.peer.set_peer_info(request.clone());
        self.open_root(&request.client_info.name).await?;
        self.negotiate_initialize(&request)
    }

    async fn on_initialized(&self, context: NotificationContext<RoleServer>) {
        let Some(root) = self.conn.root.get().cloned() else {
            return;
        };
        let engine = self.shared.engine.clone();
        let peer = context.peer.clone();
        tokio::spawn(resources::announce(
            engine.clone(),
            root.clone(),
            peer.clone(),
            self.conn.subscriptions.clone(),
            self.conn.stop.clone(),
        ));
        if peer
            .supported_elicitation_modes()
            .contains(&ElicitationMode::Form)
        {
            tokio::spawn(approvals::elicit_each(
                engine,
                root,
                peer,
                self.conn.stop.clone(),
            ));
        }
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        tools::list()
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let args = Value::Object(request.arguments.unwrap_or_default());
        let result = self.call(&request.name, args, context).await?;
        Ok(CallToolResponse::Complete(result))
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        resources::list(&self.shared.engine, self.root()?).await
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        resources::templates()
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        let read = resources::read(&self.shared.engine, self.root()?, &request.uri).await?;
        Ok(ReadResourceResponse::Complete(read))
    }

    #[allow(deprecated)]
    async fn subscribe(
        &self,
        request: SubscribeRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        resources::check(&self.shared.engine, self.root()?, &request.uri).await?;
        self.conn
            .subscriptions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(request.uri);
        Ok(())
    }

    #[allow(deprecated)]
    async fn unsubscribe(
        &self,
        request: UnsubscribeRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        self.conn
            .subscriptions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&request.uri);
        Ok(())
    }
}
