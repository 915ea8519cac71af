"""Chinese and English: the user's language and the Chinese text for every English string.

The English text is the key (as with gettext): code is written in English, and `t(text, lang)`
returns the Chinese translation when the user reads Chinese and one is known, else the English.
Templates keep their `{placeholders}`: `t("Choice {index} of {count}", lang).format(...)`.
"""

from __future__ import annotations

LANGUAGES: dict[str, str] = {"en": "English", "zh": "中文"}
DEFAULT = "en"


def pick_language(stored: object, accept_language: str | None) -> str:
    """The user's choice if they made one, else the browser's language, else English.

    `stored` comes from the browser and may be anything JSON can hold, not only a string."""
    if isinstance(stored, str) and stored in LANGUAGES:
        return stored
    for part in (accept_language or "").split(","):
        tag = part.split(";")[0].strip().lower()
        if tag.startswith("zh"):
            return "zh"
        if tag.startswith("en"):
            return "en"
    return DEFAULT


def t(text: str, lang: str) -> str:
    """`text` in the user's language (the English text when no translation is known)."""
    if lang == "zh":
        return ZH.get(text, text)
    return text


ZH: dict[str, str] = {
    # ---- sidebar ----
    "+ New chat": "+ 新对话",
    "Search titles and messages…": "搜索标题和消息…",
    "Conversations": "对话",
    "Rename or delete": "重命名或删除",
    "Title": "标题",
    "Rename": "重命名",
    "Delete…": "删除…",
    "Really delete": "确认删除",
    "Keep it": "保留",
    "Share and export": "分享与导出",
    "Create share link": "创建分享链接",
    "Revoke links": "撤销链接",
    "All my data (JSON)": "我的全部数据（JSON）",
    "Download": "下载",
    "Import JSON…": "导入 JSON…",
    "Admin": "管理",
    "Usage": "用量",
    "Last 24 hours": "最近 24 小时",
    "Last 7 days": "最近 7 天",
    "Last 30 days": "最近 30 天",
    "User": "用户",
    "Requests/min": "每分钟请求数",
    "no limit": "不限",
    "Tokens/day": "每日 token 数",
    "Set limits": "设置限额",
    "Sign out": "退出登录",
    "Signed in as {name}": "已登录：{name}",
    "Language": "语言",
    "◐ Dark / light": "◐ 深色 / 浅色",
    "⤢ Projector mode": "⤢ 投影模式",
    # ---- chat tab ----
    "Chat": "聊天",
    "Ask anything. Answers stream here; reasoning shows in a Thinking block.": "尽管提问。回答会实时显示在这里，推理过程显示在“思考”块中。",
    "Use this version": "使用此版本",
    "Message (Enter sends, Shift+Enter adds a line; paste, drop or attach images)": "输入消息（Enter 发送，Shift+Enter 换行；可粘贴、拖入或添加图片）",
    "Attach a link (image or video)": "添加链接（图片或视频）",
    "https://… one link per line": "https://… 每行一个链接",
    "Links are": "链接类型",
    "Auto (.mp4, .webm, .mov are video)": "自动（.mp4、.webm、.mov 为视频）",
    "Image": "图片",
    "Video": "视频",
    "Approve": "批准",
    "Deny": "拒绝",
    "#### Settings": "#### 设置",
    "Presets": "预设",
    "Preset": "预设",
    "Picking one fills every setting below.": "选择后会填入下方所有设置。",
    "Name": "名称",
    "Name for the current settings": "为当前设置命名",
    "Team preset (admins)": "团队预设（管理员）",
    "Save as preset": "保存为预设",
    "Delete": "删除",
    "Provider": "服务商",
    "Model": "模型",
    "API key (this browser session only)": "API 密钥（仅用于本次浏览器会话）",
    "Paste a key and press Enter": "粘贴密钥后按 Enter",
    "System prompt": "系统提示词",
    "Tools": "工具",
    "Offered to the model": "提供给模型",
    "The model may call these; each call and its result show in the chat. Calls marked ✋ "
    "wait for your approval.": "模型可以调用这些工具；每次调用及其结果都会显示在聊天中。标有 ✋ "
    "的调用需要你批准。",
    "Tool choice": "工具选择",
    "auto: the model decides · none: no calls · required: at least one call · a name: that "
    "tool.": "auto：由模型决定 · none：不调用 · required：至少调用一次 · 工具名：调用该工具。",
    "auto": "自动",
    "none": "不调用",
    "required": "必须调用",
    "Advanced parameters": "高级参数",
    # ---- parameters ----
    "Temperature": "温度（temperature）",
    "Randomness: 0 is focused, 2 is wild.": "随机性：0 最稳定，2 最发散。",
    "not set · 0 to 2 · default 0.7 on SiliconFlow": "未设置 · 0 到 2 · SiliconFlow 默认 0.7",
    "Top-p": "Top-p",
    "Nucleus sampling: keep the smallest token set with this much probability.": "核采样：只保留累计概率达到该值的最小 token 集合。",
    "not set · >0 to 1 · default 0.7 on SiliconFlow": "未设置 · 大于 0 到 1 · SiliconFlow 默认 0.7",
    "Max tokens": "最大 token 数",
    "Longest answer, in tokens.": "回答的最大长度（token）。",
    "not set · 1 to 131072 · default 4096": "未设置 · 1 到 131072 · 默认 4096",
    "Thinking": "思考",
    "Switch the model's reasoning on or off.": "打开或关闭模型的推理。",
    "default": "默认",
    "on": "开",
    "off": "关",
    "Top-k": "Top-k",
    "Sample only from the k likeliest tokens (-1: off).": "只从概率最高的 k 个 token 中采样（-1：关闭）。",
    "not set · -1 to 100 · default 50 on SiliconFlow": "未设置 · -1 到 100 · SiliconFlow 默认 50",
    "Min-p": "Min-p",
    "Drop tokens below this fraction of the top token's probability (Qwen3).": "丢弃概率低于最高 token 概率该比例的 token（Qwen3）。",
    "not set · 0 to 1 · default 0.05": "未设置 · 0 到 1 · 默认 0.05",
    "Frequency penalty": "频率惩罚",
    "Penalise tokens by how often they appeared.": "按 token 出现的次数进行惩罚。",
    "not set · -2 to 2 · default 0.5 on SiliconFlow": "未设置 · -2 到 2 · SiliconFlow 默认 0.5",
    "Presence penalty": "存在惩罚",
    "Penalise tokens that appeared at all.": "惩罚已经出现过的 token。",
    "not set · -2 to 2 · default 0": "未设置 · -2 到 2 · 默认 0",
    "Repetition penalty": "重复惩罚",
    "Multiplicative penalty on repeats (1 = off).": "对重复内容的乘法惩罚（1 = 关闭）。",
    "not set · >0 to 2 · default 1": "未设置 · 大于 0 到 2 · 默认 1",
    "Choices (n)": "候选数（n）",
    "How many answers to generate at once; you keep one.": "一次生成多少个回答；你保留其中一个。",
    "not set · 1 to 8 · default 1": "未设置 · 1 到 8 · 默认 1",
    "Stop sequences": "停止序列",
    "Up to 4 sequences, one per line; generation stops before them.": "最多 4 个，每行一个；生成会在它们之前停止。",
    "not set · default none": "未设置 · 默认无",
    "Seed": "随机种子",
    "Same seed and parameters: same answer, where supported.": "相同的种子和参数会得到相同的回答（如支持）。",
    "not set · default random": "未设置 · 默认随机",
    "Response format": "返回格式",
    "text, json_object, or a JSON schema ({name, schema, strict}).": "text、json_object 或 JSON schema（{name, schema, strict}）。",
    'not set · text | json_object | {"name": ..., "schema": {...}}': '未设置 · text | json_object | {"name": ..., "schema": {...}}',
    "Thinking budget": "思考预算",
    "Most tokens the model may spend reasoning.": "模型推理最多可用的 token 数。",
    "not set · 128 to 32768 · default 4096": "未设置 · 128 到 32768 · 默认 4096",
    "Separate reasoning": "分离推理内容",
    "jiekou.ai: move thinking into its own field.": "jiekou.ai：把思考内容放到单独的字段中。",
    "Stream": "流式输出",
    "Show the answer as it is generated; off waits for the whole answer (for servers that only "
    "return tool calls unstreamed).": "边生成边显示回答；关闭后会等待完整回答（适用于只能以非流式返回工具调用的服务器）。",
    "Log-probs": "对数概率",
    "Return token log-probabilities.": "返回 token 的对数概率。",
    "Top log-probs": "Top 对数概率",
    "Alternatives per token (needs Log-probs).": "每个 token 的候选数（需要开启对数概率）。",
    "not set · 0 to 20 · default 0": "未设置 · 0 到 20 · 默认 0",
    "Logit bias": "Logit 偏置",
    'JSON object of token id → bias, e.g. {"1234": -100}.': "token id → 偏置值的 JSON 对象，例如 "
    '{"1234": -100}。',
    # ---- compare tab ----
    "Compare": "对比",
    "Models to compare": "对比的模型数",
    "Provider 1": "服务商 1",
    "Provider 2": "服务商 2",
    "Provider 3": "服务商 3",
    "Provider 4": "服务商 4",
    "Model 1": "模型 1",
    "Model 2": "模型 2",
    "Model 3": "模型 3",
    "Model 4": "模型 4",
    "Blind mode (hide model names until you vote)": "盲测模式（投票前隐藏模型名称）",
    "New comparison": "新建对比",
    "System prompt and parameters": "系统提示词与参数",
    "not set": "未设置",
    "Each column's model is sent only the parameters it accepts.": "每一列的模型只会收到它支持的参数。",
    "Continue with": "继续对话的对象",
    "All columns": "所有列",
    "One prompt for every model (Enter sends, Shift+Enter adds a line)": "给所有模型的同一个提示（Enter 发送，Shift+Enter 换行）",
    "Stop": "停止",
    "Export Markdown": "导出 Markdown",
    "Best": "最佳",
    "★ Best": "★ 最佳",
    " · ★ best": " · ★ 最佳",
    "Model {letter}": "模型 {letter}",
    "the provider": "服务商",
    "waiting for the first token…": "等待首个 token…",
    " · streaming…": " · 输出中…",
    "failed · ": "失败 · ",
    "stopped · ": "已停止 · ",
    "cost {cost}": "费用 {cost}",
    "unknown": "未知",
    # ---- share page ----
    "Loading…": "加载中…",
    "Shared from Parley · read-only": "来自 Parley 的分享 · 只读",
    "### This link does not exist or was revoked\nAsk the person who shared it for a new one.": "### 这个链接不存在或已被撤销\n请向分享者要一个新链接。",
    # ---- header mode: the proxy did not identify the viewer (webapp/edge/proxy_page.py) ----
    "Parley does not know who you are": "Parley 无法确认你的身份",
    "The sign-in proxy in front of Parley did not identify you: the request reached Parley "
    "without a user name from it.": "Parley 前面的登录代理没有提供你的身份：请求到达 Parley 时没有"
    "附带代理给出的用户名。",
    "Reload the page, or sign in again through your company's sign-in page. If this keeps "
    "happening, ask whoever runs Parley to check the proxy (AUTH_HEADER and TRUSTED_PROXIES).": "请刷新页面，或通过公司的登录页面重新登录。如果问题持续，请联系 Parley 的管理员检查代理设置"
    "（AUTH_HEADER 和 TRUSTED_PROXIES）。",
    # ---- chat contents and figures ----
    "⏹ Stopped by you: the answer above is partial.": "⏹ 已由你停止：上面的回答不完整。",
    "⚠ Interrupted: the server stopped while this answer was streaming.": "⚠ 已中断：服务器在输出这个回答时停止了。",
    "This answer failed; use Retry to try again.": "这个回答失败了；点“重试”再试一次。",
    "running…": "运行中…",
    "awaiting your approval": "等待你批准",
    "done": "完成",
    "error": "出错",
    "timed out": "超时",
    "denied": "已拒绝",
    "cancelled": "已取消",
    "not run": "未运行",
    "(unnamed tool)": "（未命名工具）",
    "**Arguments**": "**参数**",
    "**Result**": "**结果**",
    "Approve or deny this call with the buttons under the chat.": "用聊天框下方的按钮批准或拒绝这次调用。",
    "… {count} earlier messages not shown.": "… 更早的 {count} 条消息未显示。",
    "Choice {index} of {count}": "候选 {index} / {count}",
    "✓ kept": "✓ 已保留",
    "not kept": "未保留",
    "(✓ kept)": "（✓ 已保留）",
    "≈{tokens} completion tokens (estimated)": "≈{tokens} 个输出 token（估算）",
    "≈{tokens} prompt": "输入 ≈{tokens}",
    "API keys": "API 密钥",
    "Key name": "密钥名称",
    "Create key": "创建密钥",
    "Your keys": "你的密钥",
    "Revoke": "吊销",
    "never used": "从未使用",
    "Your new key (shown only now; copy it):": "你的新密钥（只显示这一次，请复制）：",
    "Use it as an OpenAI API key with the base URL": "把它当作 OpenAI API 密钥使用，基础 URL 为",
    "Pick a key to revoke first.": "请先选择要吊销的密钥。",
    "Key revoked: it no longer works.": "密钥已吊销，不再可用。",
    "That key does not exist or is not yours.": "该密钥不存在，或不属于你。",
    (
        "Keys for Parley's OpenAI-compatible API (`/v1`): SDKs, IDE plugins and scripts act as "
        "you, with your history and limits."
    ): (
        "Parley 的 OpenAI 兼容 API（`/v1`）的密钥：SDK、IDE 插件和脚本以你的身份使用，"
        "共享你的历史和限额。"
    ),
    "e.g. laptop script": "例如：笔记本上的脚本",
    "The conversation in the address does not exist or is not yours.": "地址中的对话不存在，或不属于你。",
    "{tokens} prompt": "输入 {tokens}",
    "{tokens} completion": "输出 {tokens}",
    "{tokens} completion tokens": "输出 {tokens} token",
    "{tokens} reasoning tokens": "推理 {tokens} token",
    "first token {seconds} s": "首 token {seconds} 秒",
    "{rate} tok/s": "{rate} token/秒",
    "Answer version {index} of {count}": "回答版本 {index} / {count}",
    "Question version {index} of {count}": "提问版本 {index} / {count}",
    " (not in use)": "（未使用）",
    "{count} models from {provider}.": "{provider} 提供 {count} 个模型。",
    "⚠ **No API key configured.** Set {names} in `.env` and restart, or paste a key under "
    "**Settings → API key** (kept in server memory for this browser session only, never saved).": "⚠ **尚未配置 API 密钥。** 请在 `.env` 中设置 {names} 并重启，或在 **设置 → API 密钥** "
    "中粘贴密钥（仅保存在服务器内存中，只用于本次浏览器会话，不会写入存储）。",
    # ---- long conversations and the context gauge ----
    "Show earlier messages": "显示更早的消息",
    "Show {count} earlier messages": "显示更早的 {count} 条消息",
    "Drop the oldest turns and send": "舍弃最早的几轮并发送",
    "New chat with a summary": "用摘要开始新对话",
    "Context: {used} of {limit} tokens ({share} %)": "上下文：{used} / {limit} token（{share}%）",
    "window assumed: set context_tokens in CAPABILITIES_FILE": "窗口大小为假定值：可在 CAPABILITIES_FILE 中设置 context_tokens",
    "nearly full": "快满了",
    "full: older turns must be dropped": "已满：需要舍弃较早的对话轮次",
    "This conversation (about {used} tokens with your message) would not fit {model}'s context "
    "of {limit} tokens. Drop the oldest turns, or start a new chat with a summary (the buttons "
    "under the box); your message stays in the box.": "这个对话（连同你的消息约 {used} token）超出了 {model} 的上下文（{limit} token）。"
    "可以舍弃最早的几轮，或用摘要开始新对话（输入框下方的按钮）；你的消息仍保留在输入框中。",
    "Summarize our conversation so far for a new chat that continues it: the goal, the facts "
    "and decisions so far, and any open questions. Write only the summary.": "请总结我们到目前为止的对话，供一个接续它的新对话使用：目标、已有的事实和决定，以及尚未解决的"
    "问题。只写摘要。",
    "Summary of an earlier conversation (“{title}”):": "之前对话（“{title}”）的摘要：",
    "{title} (continued)": "{title}（续）",
    "No summary was written, so no new chat was started: try again, or drop the oldest turns "
    "instead.": "没有生成摘要，因此没有开始新对话：请重试，或改为舍弃最早的几轮。",
    # ---- messages shown as toasts ----
    "Type a message first.": "请先输入消息。",
    "Attachment refused": "附件被拒绝",
    "{model} does not accept images. Pick a vision model (their names have -VL, V or Omni, such "
    "as Qwen/Qwen2.5-VL-72B-Instruct), or send the question without its image.": "{model} 不接受图片。请选择视觉模型（名称中带 -VL、V 或 Omni，例如 "
    "Qwen/Qwen2.5-VL-72B-Instruct），或不带图片发送这个问题。",
    "{model} does not accept video. Pick a video model (such as Qwen/Qwen2.5-VL-72B-Instruct), "
    "or send the question without the video link.": "{model} 不接受视频。请选择视频模型（例如 Qwen/Qwen2.5-VL-72B-Instruct），或不带视频链接"
    "发送这个问题。",
    "Pick a different model for each column.": "请为每一列选择不同的模型。",
    "Type a prompt first.": "请先输入提示。",
    "Cannot send": "无法发送",
    "Check the parameters": "请检查参数",
    "Not found": "未找到",
    "That conversation does not exist or is not yours.": "该对话不存在或不属于你。",
    "Database unavailable": "数据库不可用",
    "No tool call is waiting for approval.": "没有等待批准的工具调用。",
    "Open a conversation to share it.": "请先打开一个对话再分享。",
    "Open a conversation first.": "请先打开一个对话。",
    "Open a conversation to export it.": "请先打开一个对话再导出。",
    "Open a conversation to rename it.": "请先打开一个对话再重命名。",
    "Open a conversation to delete it.": "请先打开一个对话再删除。",
    "Renamed.": "已重命名。",
    "Conversation deleted.": "对话已删除。",
    "Share link created.": "分享链接已创建。",
    "people who can sign in to Parley": "能登录 Parley 的人",
    "anyone with the link": "任何拿到链接的人",
    "Read-only link for {who}:": "只读链接，适用于{who}：",
    "It shows the conversation as it is now and later; **Revoke links** ends it.": "它会显示这个对话现在及以后的内容；点 **撤销链接** 即可失效。",
    "Imported as a new conversation: open it from the top of the sidebar.": "已导入为新对话：在侧边栏顶部打开它。",
    "Choices (n) is ignored while tools are offered: one answer is made.": "提供工具时忽略候选数（n）：只生成一个回答。",
    "That item cannot be edited: edit the text of your message (its attachments stay as they "
    "are).": "这一项不能编辑：请编辑消息的文字（附件保持不变）。",
    # ---- errors (webapp/app/error_text.py); the provider's own words stay as they came ----
    " and retries did not get through": "，重试也没有成功",
    " The partial answer above is kept; use Retry to try again.": "上面的部分回答已保留；点“重试”再试一次。",
    " The provider said: “{detail}”.": "服务商的原话：“{detail}”。",
    " ({status})": "（{status}）",
    ".": "。",
    "{who} rejected the API key{status}: check {key_env} in .env, or paste a key under "
    "Settings → API key.": "{who} 拒绝了 API 密钥{status}：请检查 .env 中的 {key_env}，或在"
    "“设置 → API 密钥”中粘贴密钥。",
    "{who} refused the request{status}: the account may be unverified or out of balance; "
    "check it on the {who} console.{detail}": "{who} 拒绝了请求{status}：账号可能未认证或余额"
    "不足；请到 {who} 控制台查看。{detail}",
    "{who} answered “not found”{status}: the base URL or path is wrong; check {base_env} "
    "in .env.{detail}": "{who} 返回“未找到”{status}：基础 URL 或路径有误；请检查 .env 中的 "
    "{base_env}。{detail}",
    "{who} refused the request{status}.{detail} Check the model id and the parameters "
    "under Settings.": "{who} 拒绝了请求{status}。{detail}请在“设置”中检查模型 id 和参数。",
    "{who} is rate-limiting this key{status}{gave_up}; wait a minute and try again, or "
    "lower the request rate.{detail}": "{who} 正在对这个密钥限流{status}{gave_up}；请等一分钟"
    "再试，或降低请求频率。{detail}",
    "{who}'s model service is overloaded{status}{gave_up}; try again shortly or pick "
    "another model.{detail}": "{who} 的模型服务过载{status}{gave_up}；请稍后再试或换一个模型。"
    "{detail}",
    "{who}'s gateway timed out{status}{gave_up}; try again, or pick a faster model.": "{who} "
    "的网关超时{status}{gave_up}；请重试，或换一个更快的模型。",
    "Could not connect to {who}: check the network and {base_env} in .env.": "无法连接到 "
    "{who}：请检查网络以及 .env 中的 {base_env}。",
    "The connection to {who} broke while the answer was streaming.": "输出回答时，与 {who} "
    "的连接断开了。",
    "{who} reported an error in the middle of the answer.{detail}": "{who} 在回答中途报告了错误。"
    "{detail}",
    "{who} sent a response Parley could not read{status}.{detail}": "{who} 返回了 Parley "
    "无法解析的响应{status}。{detail}",
    "{who} answered with a server error{status}{said}{again} If the request uses unusual "
    "parameters (such as response_format or tools), check them under Settings; otherwise try "
    "again later or pick another model.": "{who} 返回了服务器错误{status}{said}{again}如果请求"
    "用了不常见的参数（例如 response_format 或 tools），请在“设置”中检查；否则请稍后再试或换"
    "一个模型。",
    ": “{detail}”.": "：“{detail}”。",
    " A retry got the same answer.": "重试得到的也是同样的回答。",
    "{who} did not answer within {seconds} s (READ_TIMEOUT){gave_up}; check the network and "
    "try again, or raise READ_TIMEOUT in .env if this model is slow to start.": "{who} 在 "
    "{seconds} 秒内没有响应（READ_TIMEOUT）{gave_up}；请检查网络后重试；如果这个模型启动较慢，"
    "可以在 .env 中调大 READ_TIMEOUT。",
    "{who} did not answer in time; check the network or try again.": "{who} 没有及时响应；"
    "请检查网络或重试。",
    "{who} went silent for {seconds} s in the middle of the answer (the READ_TIMEOUT limit), "
    "so Parley stopped waiting. If this model often pauses that long (long prompts, reasoning "
    "models), raise READ_TIMEOUT in .env; otherwise try again.": "{who} 在回答中途 {seconds} "
    "秒没有任何输出（READ_TIMEOUT 限制），Parley 已停止等待。如果这个模型经常停顿这么久（长提示、"
    "推理模型），请在 .env 中调大 READ_TIMEOUT；否则请重试。",
    "{who} accepted the request but sent no answer for {seconds} s (the READ_TIMEOUT "
    "limit){again}, so Parley stopped waiting. If this model often pauses that long (long "
    "prompts, reasoning models), raise READ_TIMEOUT in .env; otherwise try again.": "{who} "
    "接受了请求，但 {seconds} 秒内没有返回任何回答（READ_TIMEOUT 限制）{again}，Parley 已停止"
    "等待。如果这个模型经常停顿这么久（长提示、推理模型），请在 .env 中调大 READ_TIMEOUT；"
    "否则请重试。",
    ", on a second try too": "，第二次尝试也是如此",
    # Parley's own notes, stored as their English text (the key)
    "Parley hit an internal error; the partial answer is kept.": "Parley 遇到内部错误；部分回答"
    "已保留。",
    "The answer hit the max_tokens limit and was cut off.": "回答达到 max_tokens 上限，被截断了。",
    "The server stopped while this answer was streaming.": "服务器在输出这个回答时停止了。",
    "The server shut down while this answer was streaming; the partial answer is kept.": "服务器"
    "在输出这个回答时关闭了；部分回答已保留。",
    "This answer was still streaming when the conversation was exported.": "导出对话时，这个回答"
    "仍在输出中。",
    "The database is not answering right now, so nothing was saved; try again in a moment. "
    "(If it persists, an admin should check DATABASE_URL and /healthz.)": "数据库暂时没有响应，"
    "因此没有保存任何内容；请稍后再试。（如果问题持续，请管理员检查 DATABASE_URL 和 /healthz。）",
    "Could not list models, showing the built-in list. ": "无法获取模型列表，显示内置列表。",
    "No API key for {provider} yet: showing the built-in model list. You can also type a model "
    "id.": "{provider} 还没有 API 密钥：显示内置模型列表。你也可以直接输入模型 id。",
    "{count} models listed by {provider}.": "{provider} 列出了 {count} 个模型。",
    # ---- toasts of the chat and Compare tabs ----
    "Not signed in": "未登录",
    "Cannot undo": "无法撤销",
    "Not renamed": "未重命名",
    "There is nothing to undo yet.": "还没有可以撤销的内容。",
    "The first question cannot be undone: edit it, or start a new chat.": "第一个问题不能撤销："
    "请编辑它，或开始新对话。",
    "That message is not in this conversation any more.": "这条消息已不在这个对话中。",
    "There is no version in that direction.": "那个方向没有其他版本。",
    "This conversation used provider {provider}, which is no longer configured; pick another "
    "provider to continue it.": "这个对话使用的服务商 {provider} 已不再配置；请选择其他服务商继续。",
    "Run a comparison first.": "请先运行一次对比。",
    "Run or open a comparison to export it.": "请先运行或打开一个对比再导出。",
    "Continue from an answer of the latest round.": "请从最新一轮的某个回答继续。",
    "This comparison already continues with another model.": "这个对比已经在和另一个模型继续。",
    "That message is not an answer of a comparison.": "这条消息不是对比中的回答。",
    # ---- presets ----
    "That preset no longer exists or is not yours.": "该预设已不存在，或不属于你。",
    "Preset not found": "未找到预设",
    "Preset not saved": "预设未保存",
    "This preset offers tools that are no longer installed: {missing}.": "这个预设提供的工具已不再"
    "安装：{missing}。",
    "Preset “{name}” applied.": "已应用预设“{name}”。",
    "This preset uses provider {provider}, which is not configured here; the current provider "
    "is kept.": "这个预设使用的服务商 {provider} 在这里没有配置；保留当前服务商。",
    "Only admins can publish team presets.": "只有管理员可以发布团队预设。",
    "Give the preset a name first.": "请先给预设起个名字。",
    "Pick a preset to delete.": "请选择要删除的预设。",
    "Shipped presets cannot be deleted.": "内置预设不能删除。",
    "Deleted preset “{name}”.": "已删除预设“{name}”。",
    # ---- team: import, usage and limits ----
    "No file arrived; pick a Parley JSON export.": "没有收到文件；请选择 Parley 导出的 JSON 文件。",
    "The file is larger than {size} MB.": "文件超过 {size} MB。",
    "Cannot import": "无法导入",
    "Only admins can see usage and set limits.": "只有管理员可以查看用量和设置限额。",
    "{label} must be a whole number ≥ 0 (empty: no limit).": "{label} 必须是 ≥ 0 的整数（留空：不限）。",
    "Requests per minute": "每分钟请求数",
    "Tokens per day": "每日 token 数",
    "Stopped after {number} rounds of tool calls (the limit, TOOL_MAX_ROUNDS): the last calls "
    "were not run. Ask the model to continue, or raise the limit in .env.": "工具调用达到 {number} "
    "轮（上限 TOOL_MAX_ROUNDS）后停止：最后的调用没有执行。可以让模型继续，或在 .env 中调大上限。",
    "The provider returned fewer choices than the {number} requested (n); it may not support "
    "n > 1.": "服务商返回的候选少于请求的 {number} 个（n）；它可能不支持 n > 1。",
    "Stopped: nobody was watching this answer for {number} minutes (RUN_UNWATCHED_TIMEOUT). "
    "The partial answer is kept; use Retry to try again.": "已停止：这个回答有 {number} 分钟无人"
    "查看（RUN_UNWATCHED_TIMEOUT）。部分回答已保留；点“重试”再试一次。",
}
