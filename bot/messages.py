"""Every user-facing string, in English and Simplified Chinese, and the one error-to-words map."""

from __future__ import annotations

from typing import Literal

from bot.errors import ConfigError, ErrorKind, InputError, ProviderError

Lang = Literal["en", "zh"]

CATALOGUE: dict[str, dict[Lang, str]] = {
    "start": {
        "en": "Hi! I answer with a large language model. Write me a message, or see /help.",
        "zh": "你好！我用大语言模型回答问题。直接给我发消息，或查看 /help。",
    },
    "help": {
        "en": (
            "Write a message and I answer, streaming as I go.\n\n"
            "/chat TEXT - ask (in groups, too)\n"
            "/retry - answer your last message again\n"
            "/edit INSTRUCTION - reply to a text to have it rewritten\n"
            "/complete TEXT - let the model continue a text\n"
            "/new - start a new conversation\n"
            "/persona - show or change the assistant's persona\n"
            "/models - show the models and choose this chat's\n"
            "/image TEXT - draw a picture; /edit TEXT as a reply to a photo changes it\n"
            "/usage - your usage and limits (admins: /usage all, /usage chat)\n"
            "/help - this help\n\n"
            "I remember the conversation until you send /new."
        ),
        "zh": (
            "直接发消息，我会边生成边显示回答。\n\n"
            "/chat 文本 - 提问（群组中也可用）\n"
            "/retry - 重新回答你的上一条消息\n"
            "/edit 要求 - 回复一段文字，按要求改写它\n"
            "/complete 文本 - 让模型续写一段文字\n"
            "/new - 开始新对话\n"
            "/persona - 查看或切换助手角色\n"
            "/models - 查看模型并为本聊天选择模型\n"
            "/image 文本 - 生成图片；回复图片并发送 /edit 文本 可修改图片\n"
            "/usage - 查看用量和额度（管理员：/usage all、/usage chat）\n"
            "/help - 查看帮助\n\n"
            "在你发送 /new 之前，我会记住对话内容。"
        ),
    },
    "command.chat": {"en": "Ask a question", "zh": "提问"},
    "command.new": {"en": "Start a new conversation", "zh": "开始新对话"},
    "command.help": {"en": "How to use this bot", "zh": "使用帮助"},
    "command.persona": {"en": "Show or change the persona", "zh": "查看或切换角色"},
    "command.start": {"en": "Start", "zh": "开始"},
    "command.models": {"en": "Show or choose the models", "zh": "查看或选择模型"},
    "new_conversation": {
        "en": "Started a new conversation. Earlier messages are forgotten.",
        "zh": "已开始新对话，之前的消息不再作为上下文。",
    },
    "input.empty_chat": {
        "en": "Write your question after the command, e.g. /chat What is a haiku?",
        "zh": "请在命令后写上问题，例如：/chat 什么是俳句？",
    },
    "queued": {
        "en": "⏳ I'll answer this as soon as I've finished the answer before it.",
        "zh": "⏳ 上一个回答完成后，我会马上回答这条消息。",
    },
    "button.stop": {"en": "⏹ Stop", "zh": "⏹ 停止"},
    "stop.stopping": {"en": "Stopping…", "zh": "正在停止…"},
    "stop.not_allowed": {
        "en": "Only the person who asked can stop this answer.",
        "zh": "只有提问的人才能停止这个回答。",
    },
    "stop.finished": {"en": "This answer has already finished.", "zh": "这个回答已经结束了。"},
    "note.stopped": {"en": "⏹ Stopped.", "zh": "⏹ 已停止。"},
    "note.shutdown": {
        "en": "⚠️ The bot restarted; the answer was cut here.",
        "zh": "⚠️ 机器人重启了，回答到此中断。",
    },
    "restarting": {
        "en": "⚠️ The bot is restarting and could not answer this. Please send it again in a "
        "moment.",
        "zh": "⚠️ 机器人正在重启，未能回答这条消息。请稍后再发一次。",
    },
    "resume.queued": {
        "en": "⏳ The bot is restarting; I'll answer this as soon as it is back.",
        "zh": "⏳ 机器人正在重启，恢复后我会回答这条消息。",
    },
    "resume.too_old": {
        "en": "⚠️ The bot restarted before it could answer this. Please send it again.",
        "zh": "⚠️ 机器人在回答这条消息之前重启了。请再发一次。",
    },
    "persona.current": {"en": "Persona: {name}", "zh": "当前角色：{name}"},
    "persona.choose": {
        "en": "Choose another below, or set your own with /persona custom TEXT.",
        "zh": "在下方选择其他角色，或用 /persona custom 文本 设置自定义角色。",
    },
    "persona.changed": {
        "en": "Persona set to {name}. A new conversation has started.",
        "zh": "角色已切换为 {name}，已开始新对话。",
    },
    "persona.custom": {"en": "custom", "zh": "自定义"},
    "persona.unknown": {
        "en": "There is no persona called {name}. Choose one of: {names}.",
        "zh": "没有名为 {name} 的角色。可选：{names}。",
    },
    "persona.custom_empty": {
        "en": "Write the system prompt after the command, e.g. /persona custom You are a pirate.",
        "zh": "请在命令后写上系统提示词，例如：/persona custom 你是一名海盗。",
    },
    "access.chat_admins_only": {
        "en": "Only this group's administrators can change that.",
        "zh": "只有本群管理员可以修改此设置。",
    },
    # /models
    "models.title": {"en": "🤖 Models", "zh": "🤖 模型"},
    "models.current": {
        "en": "This chat uses {model} ({source}).",
        "zh": "本聊天使用 {model}（{source}）。",
    },
    "models.source.chat": {"en": "chosen for this chat", "zh": "本聊天自选"},
    "models.source.admin": {
        "en": "the default, set by the bot's admins",
        "zh": "管理员设置的默认模型",
    },
    "models.source.config": {"en": "the default", "zh": "默认模型"},
    "models.defaults": {"en": "Defaults:", "zh": "默认模型："},
    "models.admin_mark": {"en": " (set by an admin)", "zh": "（管理员设置）"},
    "models.edits_chat": {"en": "the chat model", "zh": "使用聊天模型"},
    "models.suggested": {"en": "Suggested:", "zh": "推荐模型："},
    "models.reported": {"en": "Reported by the providers:", "zh": "各服务商提供的模型："},
    "models.more": {"en": "… and {count} more", "zh": "……等另外 {count} 个"},
    "models.provider_none": {"en": "no model list", "zh": "未提供模型列表"},
    "models.provider_timeout": {"en": "did not answer in time", "zh": "未及时响应"},
    "models.provider_failed": {
        "en": "the model list could not be fetched",
        "zh": "无法获取模型列表",
    },
    "models.how_chat": {
        "en": "Choose this chat's model below, or send /models chat MODEL.",
        "zh": "在下方为本聊天选择模型，或发送 /models chat 模型名。",
    },
    "models.how_admin": {
        "en": "Bot admins: /models set CAPABILITY MODEL and /models reset CAPABILITY.",
        "zh": "机器人管理员：/models set 能力 模型名，/models reset 能力。",
    },
    "models.button_default": {"en": "↩ Default ({model})", "zh": "↩ 默认（{model}）"},
    "models.chat_set": {
        "en": "This chat now uses {model}. The conversation continues.",
        "zh": "本聊天现在使用 {model}，对话继续。",
    },
    "models.chat_reset": {
        "en": "This chat now uses the default model, {model}. The conversation continues.",
        "zh": "本聊天已恢复使用默认模型 {model}，对话继续。",
    },
    "models.chat_already": {
        "en": "This chat already uses {model}.",
        "zh": "本聊天已经在使用 {model}。",
    },
    "models.unknown_model": {
        "en": "There is no model {name} to choose. Choose one of: {names}.",
        "zh": "没有可选的模型 {name}。可选：{names}。",
    },
    "models.unknown_role": {
        "en": "There is no capability {name}. Choose one of: {names}.",
        "zh": "没有名为 {name} 的能力。可选：{names}。",
    },
    "models.usage": {
        "en": (
            "/models - the models and this chat's choice\n"
            "/models chat MODEL - choose this chat's model\n"
            "/models chat reset - back to the default\n"
            "/models set CAPABILITY MODEL - set a default (bot admins)\n"
            "/models reset CAPABILITY - back to the configured default (bot admins)"
        ),
        "zh": (
            "/models - 查看模型及本聊天的选择\n"
            "/models chat 模型名 - 为本聊天选择模型\n"
            "/models chat reset - 恢复默认模型\n"
            "/models set 能力 模型名 - 设置默认模型（机器人管理员）\n"
            "/models reset 能力 - 恢复配置中的默认模型（机器人管理员）"
        ),
    },
    "models.admins_only": {
        "en": "Only the bot's admins can change the default models.",
        "zh": "只有机器人管理员可以修改默认模型。",
    },
    "models.choice_off": {
        "en": "Choosing your own model is turned off; the bot's admins choose it.",
        "zh": "此机器人不允许用户自选模型，模型由机器人管理员决定。",
    },
    "models.default_set": {
        "en": "The default {role} model is now {model}.",
        "zh": "默认的 {role} 模型已设为 {model}。",
    },
    "models.default_reset": {
        "en": "The default {role} model is the configured one again: {model}.",
        "zh": "默认的 {role} 模型已恢复为配置中的 {model}。",
    },
    # groups and access
    "limits.too_fast": {
        "en": "⏳ Too many requests: at most {limit} a minute. Please try again in {seconds} s.",
        "zh": "⏳ 请求太频繁：每分钟最多 {limit} 次。请在 {seconds} 秒后再试。",
    },
    # quotas and /usage
    "command.usage": {"en": "Your usage and limits", "zh": "查看用量和额度"},
    "quota.user.requests": {
        "en": "You have used your {limit} requests for {period}; it resets in {wait} ({reset}).",
        "zh": "你{period}的 {limit} 次请求已用完，{wait}后重置（{reset}）。",
    },
    "quota.user.tokens": {
        "en": "You have used your {limit} tokens for {period}; it resets in {wait} ({reset}).",
        "zh": "你{period}的 {limit} 个 token 已用完，{wait}后重置（{reset}）。",
    },
    "quota.chat.requests": {
        "en": "This chat has used its {limit} requests for {period}; it resets in {wait} "
        "({reset}).",
        "zh": "本群{period}的 {limit} 次请求已用完，{wait}后重置（{reset}）。",
    },
    "quota.chat.tokens": {
        "en": "This chat has used its {limit} tokens for {period}; it resets in {wait} ({reset}).",
        "zh": "本群{period}的 {limit} 个 token 已用完，{wait}后重置（{reset}）。",
    },
    "quota.period.day": {"en": "today", "zh": "今天"},
    "quota.period.month": {"en": "this month", "zh": "本月"},
    "quota.wait.days": {"en": "{days} d {hours} h", "zh": "{days} 天 {hours} 小时"},
    "quota.wait.hours": {"en": "{hours} h {minutes} min", "zh": "{hours} 小时 {minutes} 分钟"},
    "quota.wait.minutes": {"en": "{minutes} min", "zh": "{minutes} 分钟"},
    "usage.off": {
        "en": "No quotas are set for this bot, so usage is not counted.",
        "zh": "此机器人未设置额度，因此不统计用量。",
    },
    "usage.title": {"en": "📊 Your usage", "zh": "📊 你的用量"},
    "usage.role": {"en": "Limits of the role {role}.", "zh": "额度角色：{role}。"},
    "usage.admin": {
        "en": "You are a bot admin: no limits apply to you.",
        "zh": "你是机器人管理员，不受额度限制。",
    },
    "usage.chat_title": {"en": "📊 This chat: {name}", "zh": "📊 本群：{name}"},
    "usage.day": {
        "en": "Today (resets in {wait}, {reset}):",
        "zh": "今天（{wait}后重置，{reset}）：",
    },
    "usage.month": {
        "en": "This month (resets in {wait}, {reset}):",
        "zh": "本月（{wait}后重置，{reset}）：",
    },
    "usage.requests": {"en": "• requests: {used}", "zh": "• 请求：{used} 次"},
    "usage.tokens": {"en": "• tokens: {used}", "zh": "• token：{used}"},
    "usage.limit": {
        "en": " of {limit} ({left} left)",
        "zh": "，上限 {limit}（剩余 {left}）",
    },
    "usage.unlimited": {"en": " (no limit)", "zh": "（不限）"},
    "usage.held": {
        "en": "; {held} held for answers in progress",
        "zh": "；{held} 预留给进行中的回答",
    },
    "usage.all_title": {"en": "📊 Everyone's usage", "zh": "📊 全部用量"},
    "usage.all_totals": {
        "en": "{users} users: {requests} requests, {tokens} tokens",
        "zh": "{users} 位用户：{requests} 次请求，{tokens} token",
    },
    "usage.top_users": {"en": "Top users:", "zh": "用量最多的用户："},
    "usage.top_chats": {"en": "Top group chats:", "zh": "用量最多的群："},
    "usage.rank": {
        "en": "{n}. {name}: {requests} requests, {tokens} tokens",
        "zh": "{n}. {name}：{requests} 次请求，{tokens} token",
    },
    "usage.user_name": {"en": "user {id}", "zh": "用户 {id}"},
    "usage.nobody": {"en": "nobody yet", "zh": "暂无"},
    "usage.all_not_allowed": {
        "en": "Only the bot's admins can see everyone's usage.",
        "zh": "只有机器人管理员可以查看全部用量。",
    },
    "usage.chat_not_allowed": {
        "en": "Only this group's administrators and the bot's admins can see its usage.",
        "zh": "只有本群管理员和机器人管理员可以查看本群用量。",
    },
    "usage.other_chat_not_allowed": {
        "en": "Only the bot's admins can see another chat's usage.",
        "zh": "只有机器人管理员可以查看其他聊天的用量。",
    },
    "usage.private_chat": {
        "en": "A private chat has no limits of its own; /usage shows yours.",
        "zh": "私聊没有单独的额度；发送 /usage 查看你自己的用量。",
    },
    "usage.bad_chat": {
        "en": "“{value}” is not a chat id. Use /usage chat or /usage chat -1001234567890.",
        "zh": "“{value}” 不是聊天 ID。请使用 /usage chat 或 /usage chat -1001234567890。",
    },
    "usage.usage": {
        "en": "Use /usage, /usage chat [CHAT_ID] or /usage all.",
        "zh": "用法：/usage、/usage chat [聊天ID] 或 /usage all。",
    },
    "access.refused": {
        "en": "Sorry, this bot is private and you are not on its list of users.",
        "zh": "抱歉，这是私人机器人，你不在允许使用的名单中。",
    },
    "input.too_long": {
        "en": "That message is too long ({length} characters; the limit is {limit}). "
        "Please shorten it or send it in parts.",
        "zh": "消息太长（{length} 个字符，上限为 {limit}）。请缩短或分几次发送。",
    },
    "input.unsupported": {
        "en": "I understand text and photos only; voice messages, stickers, videos "
        "and other files are not supported.",
        "zh": "我只能理解文字和图片，不支持语音、贴纸、视频和其他文件。",
    },
    "input.empty_mention": {
        "en": "Ask me something after the mention, e.g. @{username} What is a haiku?",
        "zh": "请在提及我之后写上问题，例如：@{username} 什么是俳句？",
    },
    # /image, /edit of a photo, photos sent to the bot
    "command.image": {"en": "Draw a picture", "zh": "生成图片"},
    "image.usage": {
        "en": (
            "Describe the picture after the command, e.g. /image a red fox in the snow\n"
            "Options before the description: --size 1024x1024, --n 2 (up to {max})."
        ),
        "zh": (
            "请在命令后描述图片，例如：/image 雪地里的一只红狐狸\n"
            "可在描述前加选项：--size 1024x1024，--n 2（最多 {max} 张）。"
        ),
    },
    "image.bad_size": {
        "en": "“{value}” is not a size. Use WIDTHxHEIGHT, e.g. --size 1024x1024 (or auto).",
        "zh": "“{value}” 不是有效的尺寸。请用 宽x高，例如 --size 1024x1024（或 auto）。",
    },
    "image.bad_count": {
        "en": "--n takes a whole number from 1 to {max}, not “{value}”.",
        "zh": "--n 需要 1 到 {max} 之间的整数，而不是 “{value}”。",
    },
    "image.unknown_option": {
        "en": "Unknown option {option}. "
        "Put --size WIDTHxHEIGHT or --n COUNT before the description.",
        "zh": "未知选项 {option}。请在描述前使用 --size 宽x高 或 --n 数量。",
    },
    "image.missing_value": {
        "en": "{option} needs a value, e.g. --size 1024x1024 or --n 2.",
        "zh": "{option} 需要一个值，例如 --size 1024x1024 或 --n 2。",
    },
    "image.revised": {"en": "Revised prompt:", "zh": "改写后的提示词："},
    "image.rejected": {
        "en": "The AI provider refused to draw this because of its content policy. "
        "Try describing it differently.",
        "zh": "AI 服务因内容安全策略拒绝生成这张图片，请换一种描述再试。",
    },
    "image.bad_request": {
        "en": "The AI provider rejected the image request: the model ({model}) may not offer "
        "this size or count. Try --size 1024x1024 --n 1.",
        "zh": "AI 服务拒绝了图片请求：模型（{model}）可能不支持该尺寸或数量。"
        "请试试 --size 1024x1024 --n 1。",
    },
    "image.send_failed": {
        "en": "The picture was made, but Telegram would not take it. Please try again.",
        "zh": "图片已生成，但 Telegram 未能接收，请重试。",
    },
    "edit.photo_usage": {
        "en": "Write what to change after the command, e.g. /edit make the sky purple",
        "zh": "请在命令后写上要修改的内容，例如：/edit 把天空改成紫色",
    },
    "edit.rejected": {
        "en": "The AI provider refused to edit this picture because of its content policy.",
        "zh": "AI 服务因内容安全策略拒绝修改这张图片。",
    },
    "edit.bad_request": {
        "en": "The AI provider could not edit this picture with {model}. Some models take only "
        "square PNG images: send the picture as a PNG file and reply to that.",
        "zh": "AI 服务无法用 {model} 修改这张图片。部分模型只接受正方形 PNG 图片："
        "请把图片作为 PNG 文件发送，再回复该文件。",
    },
    "photo.too_large": {
        "en": "This picture is too large (over {limit} MB). Please send a smaller one.",
        "zh": "图片太大（超过 {limit} MB），请发送小一些的图片。",
    },
    "photo.download_failed": {
        "en": "I could not fetch the picture from Telegram. Please send it again.",
        "zh": "无法从 Telegram 获取这张图片，请重新发送。",
    },
    "vision.not_capable": {
        "en": "The current model ({model}) cannot see pictures. "
        "Choose one that can with /models: {models}. "
        "To change the picture instead, reply to it with /edit and what to change.",
        "zh": "当前模型（{model}）无法识别图片。请用 /models 选择支持图片的模型：{models}。"
        "如果想修改这张图片，请回复它并发送 /edit 和修改内容。",
    },
    "vision.none": {
        "en": "The current model ({model}) cannot see pictures, and no model that can is "
        "configured. Please tell the bot's admin. "
        "To change the picture instead, reply to it with /edit and what to change.",
        "zh": "当前模型（{model}）无法识别图片，且没有配置支持图片的模型。请联系机器人管理员。"
        "如果想修改这张图片，请回复它并发送 /edit 和修改内容。",
    },
    "note.cut": {"en": "⚠️ The answer was cut off: {reason}", "zh": "⚠️ 回答被中断：{reason}"},
    "note.interrupted": {
        "en": "⚠️ The answer was interrupted because the bot restarted.",
        "zh": "⚠️ 由于机器人重启，回答被中断。",
    },
    # /edit of a text, /complete, /retry
    "command.retry": {"en": "Answer the last message again", "zh": "重新回答上一条消息"},
    "command.edit": {"en": "Rewrite a text as you say", "zh": "按要求改写文字"},
    "command.complete": {"en": "Continue a text", "zh": "续写文字"},
    "input.empty_complete": {
        "en": "Write the beginning of a text after the command, e.g. /complete Once upon a time",
        "zh": "请在命令后写上开头，例如：/complete 很久很久以前",
    },
    "input.edit_no_instruction": {
        "en": (
            "Say how to change the text, e.g. reply to it with /edit fix the spelling, "
            "or write /edit INSTRUCTION and put the text on the next lines."
        ),
        "zh": (
            "请说明如何修改，例如回复那段文字：/edit 改正错别字；"
            "或写 /edit 要求，并在下一行起写上文字。"
        ),
    },
    "input.edit_no_text": {
        "en": (
            "There is no text to edit. Reply to a text message with /edit INSTRUCTION, "
            "or put the text on the lines after the instruction."
        ),
        "zh": "没有可修改的文字。请用 /edit 要求 回复一条文字消息，或在要求的下一行起写上文字。",
    },
    "retry.nothing": {
        "en": "There is no answer to regenerate in this conversation yet.",
        "zh": "当前对话中还没有可以重新生成的回答。",
    },
    "retry.not_allowed": {
        "en": "Only the person who asked, or an admin, can regenerate this answer.",
        "zh": "只有提问的人或管理员才能重新生成这个回答。",
    },
    "retry.failed": {
        "en": "⚠️ Could not regenerate the answer; the previous one stays. {reason}",
        "zh": "⚠️ 未能重新生成回答，之前的回答保持不变。{reason}",
    },
    "error.auth": {
        "en": "The AI provider rejected the bot's API key. Please tell the bot's admin.",
        "zh": "AI 服务拒绝了机器人的 API 密钥，请联系机器人管理员。",
    },
    "error.quota": {
        "en": "The AI provider's quota or balance is used up. Please tell the bot's admin.",
        "zh": "AI 服务的额度或余额已用完，请联系机器人管理员。",
    },
    "error.content_rejected": {
        "en": "The AI provider refused this request because of its content policy.",
        "zh": "AI 服务因内容安全策略拒绝了此请求。",
    },
    "error.model_not_found": {
        "en": "The AI provider does not offer the configured model.",
        "zh": "AI 服务不提供所配置的模型。",
    },
    "error.context_too_long": {
        "en": "The conversation is too long for the model. Send /new to start afresh.",
        "zh": "对话太长，超出了模型的上限。发送 /new 重新开始。",
    },
    "error.rate_limited": {
        "en": "The AI provider is receiving too many requests. Please try again in a minute.",
        "zh": "AI 服务请求过多，请稍后再试。",
    },
    "error.bad_request": {
        "en": "The AI provider rejected the request. Please rephrase and try again.",
        "zh": "AI 服务拒绝了该请求，请换种说法再试。",
    },
    "error.unavailable": {
        "en": "The AI provider is unavailable right now. Please try again later.",
        "zh": "AI 服务暂时不可用，请稍后再试。",
    },
    "error.timeout": {
        "en": "The AI provider took too long to answer. Please try again.",
        "zh": "AI 服务响应超时，请重试。",
    },
    "error.stream_cut": {
        "en": "The connection to the AI provider broke off.",
        "zh": "与 AI 服务的连接中断了。",
    },
    "error.unsupported": {
        "en": "The AI provider does not offer this. Please tell the bot's admin.",
        "zh": "AI 服务不支持此功能，请联系机器人管理员。",
    },
    "error.config": {
        "en": "The bot is misconfigured. Please tell the bot's admin.",
        "zh": "机器人配置有误，请联系机器人管理员。",
    },
    "error.internal": {
        "en": "Sorry, something went wrong on my side. Please try again.",
        "zh": "抱歉，机器人内部出错了，请重试。",
    },
}

_ERROR_KEYS: dict[ErrorKind, str] = {kind: f"error.{kind.value}" for kind in ErrorKind}


def language_of(language_code: str | None) -> Lang:
    """Pick the catalogue language for a Telegram ``language_code``."""
    return "zh" if language_code and language_code.lower().startswith("zh") else "en"


def text(key: str, lang: Lang, **params: object) -> str:
    """Return the catalogue string ``key`` in ``lang``, formatted with ``params``."""
    template = CATALOGUE[key][lang]
    return template.format(**params) if params else template


def user_message(exc: BaseException, lang: Lang) -> str:
    """The short words a user sees for ``exc``; never a traceback or provider detail."""
    if isinstance(exc, ProviderError):
        return text(_ERROR_KEYS[exc.kind], lang)
    if isinstance(exc, InputError):
        return text(exc.key, lang, **exc.params)
    if isinstance(exc, ConfigError):
        return text("error.config", lang)
    return text("error.internal", lang)


def cut_note(exc: BaseException, lang: Lang) -> str:
    """The note under a partial answer that ended with ``exc``."""
    return text("note.cut", lang, reason=user_message(exc, lang))
