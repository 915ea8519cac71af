"""HTTP routes besides Gradio's: the OpenAI-compatible /v1 API, the MCP server, the page's
own routes and the hardening around them."""
