"""Every string of the labeling app's UI, in English (``en``) and Simplified Chinese (``zh-CN``).

One catalogue serves both halves of the page:

* **Static text** (buttons, tabs, headings, safety categories, help, the guidelines) is a key
  (``gr.I18n(...)(key)``) that Gradio's front end translates in the browser: the catalogue goes to
  ``launch(i18n=...)`` and the browser's language picks the locale (``zh-*`` shows ``zh-CN``, anything
  else ``en``), or the language the annotator picked on the page (the ``label_lang`` cookie).
* **Text the server writes** (the progress line, status messages, errors, the admin tables) is formatted
  here with :func:`t` in the caller's language, which :func:`choose` reads from the same cookie or, before
  any choice, the request's ``Accept-Language``, by the rule the page's script applies to
  ``navigator.languages``: both halves always agree.
* The keyboard hints are written by the page's script: :func:`script_strings` hands it its keys.

A key's text is a :meth:`str.format` template when the server fills it (``{name}``); every language
has the same keys and the same fields (``tests/test_label_i18n.py`` checks both).
"""

from __future__ import annotations

from collections.abc import Mapping

LANGUAGES: tuple[str, ...] = ("en", "zh-CN")
DEFAULT = "en"
#: The cookie the page's language switch sets (the server reads it too).
LANG_COOKIE = "label_lang"
#: Each language named in itself, for the switch (by convention not translated).
AUTONYMS = {"en": "English", "zh-CN": "中文"}

#: Keys the page's keyboard script needs (see ``HEAD`` in :mod:`labeling_ui.app`).
SCRIPT_KEYS = ("hint_side", "hint_strength", "strength_1", "strength_2", "strength_3", "strength_4", "title")

EN: dict[str, str] = {
    "title": "Preference labeling",
    "login_message": "Preference labeling: sign in with the account an admin made for you.",
    "logout": "Log out",
    "signed_in_as": "Signed in as **{name}** ({role})",
    "role_admin": "admin",
    "role_annotator": "annotator",
    "progress": ("Project: {complete}/{total} items complete · your labels: **{labeled}** "
                 "(last 24 h: {last_24h}, skipped: {skipped})"),
    "tab_label": "Label",
    "tab_admin": "Admin",
    "tab_reports": "Reports",
    "prompt": "Prompt",
    "response_a": "Response A",
    "response_b": "Response B",
    # the choice bar: a side and a strength (the second line is the keyboard shortcut)
    "strength_4": "much better",
    "strength_3": "better",
    "strength_2": "slightly better",
    "strength_1": "negligibly better",
    "choice_A_4": "A much better",
    "choice_A_3": "A better",
    "choice_A_2": "A slightly better",
    "choice_A_1": "A negligibly better",
    "choice_B_4": "B much better",
    "choice_B_3": "B better",
    "choice_B_2": "B slightly better",
    "choice_B_1": "B negligibly better",
    "choice_tie": "Tie",
    "choice_both_bad": "Both bad",
    "button_A_4": "A much better\n1 r",
    "button_A_3": "A better\n1 e",
    "button_A_2": "A slightly better\n1 w",
    "button_A_1": "A negligibly better\n1 q",
    "button_B_4": "B much better\n2 r",
    "button_B_3": "B better\n2 e",
    "button_B_2": "B slightly better\n2 w",
    "button_B_1": "B negligibly better\n2 q",
    "button_tie": "Tie\n3",
    "button_both_bad": "Both bad\n4",
    "skip": "Skip (s)",
    "undo": "Undo (u)",
    "keys_help": ("Keys: **1** / **2** = A / B and **q w e r** = how much better (either order) · "
                  "**3** tie · **4** both bad · **s** skip · **u** undo"),
    "hint_side": "{side} is better: by how much? q w e r (Esc: cancel)",
    "hint_strength": "{strength}: which one? 1 = A, 2 = B (Esc: cancel)",
    "flags_and_note": "Safety flags and note",
    "flags_a": "Safety flags for A",
    "flags_b": "Safety flags for B",
    "note": "Note (optional)",
    "guidelines": "Guidelines",
    "no_guidelines": "No guidelines configured (label.guidelines).",
    # the safety categories (alignment.safety.categories.CATEGORIES)
    "category_sexual": "sexual",
    "category_hate": "hate",
    "category_violence": "violence",
    "category_harassment": "harassment",
    "category_self-harm": "self-harm",
    "category_sexual/minors": "sexual/minors",
    "category_hate/threatening": "hate/threatening",
    "category_violence/graphic": "violence/graphic",
    "category_weapons": "weapons",
    "category_cybercrime": "cybercrime",
    # status line and messages
    "all_done": "All done: nothing left to label for you right now. Thank you!",
    "nothing_to_label": "Nothing to label.",
    "nothing_to_skip": "Nothing to skip.",
    "saved": "Saved label #{label_id}: {choice}.",
    "skipped": "Skipped.",
    "undone": "Undid your last label: label this item again.",
    "err_not_yours": "⚠️ This item is no longer assigned to you; here is your next one.",
    "err_was_skipped": "⚠️ You skipped this item; here is your next one.",
    "err_lease_expired": "⚠️ Your time on this item ran out and it has all its labels now; here is your next one.",
    "err_account": "⚠️ Your account is unknown or deactivated.",
    "err_refused": "⚠️ The server did not accept this label; here is your next item.",
    "not_logged_in": "Not logged in.",
    "admins_only": "Admins only.",
    "reports_admins_only": "Reports are for admins only (label.reports_for).",
    # admin tab
    "refresh_stats": "Refresh stats",
    "export": "Export preferences dataset",
    "export_not_configured": "Export is not configured for this server.",
    "exported": "Exported **{rows}** rows to `{path}`.",
    "stats_project": "Project `{project}` ({overlap} labels per item)",
    "col_items": "items",
    "col_complete": "complete",
    "col_in_progress": "in progress",
    "col_untouched": "untouched",
    "col_gold": "gold",
    "col_active_leases": "active leases",
    "col_skips": "skips",
    "stats_labels": "**Labels:** {total} ({regular} regular, {gold} on gold items); choices: {choices}",
    "stats_per_annotator": "Per annotator",
    "col_annotator": "annotator",
    "col_labels": "labels",
    "col_last_hour": "last hour",
    "col_median_time": "median s/label",
    "col_gold_accuracy": "gold accuracy (n)",
    "col_picked_first": "picked first shown",
    "col_ties": "ties",
    "col_both_bad": "both bad",
    "stats_per_hour": "Labels per hour (last 24 h)",
    "col_hour": "hour",
    "stats_agreement": "Agreement",
    "col_pairs": "label pairs",
    "col_raw_with_ties": "raw (with ties)",
    "col_pairs_without_ties": "pairs without ties",
    "col_raw_without_ties": "raw (without ties)",
    "col_alpha": "Krippendorff's α (ordinal strength)",
    "stats_kappa": "Cohen's κ per annotator pair",
    "col_annotators": "annotators",
    "col_shared_items": "shared items",
    "col_kappa": "κ",
    "col_raw": "raw",
    "stats_safety": "Safety flags",
    "stats_flagged": "Labels with any flag: {n}",
    "col_category": "category",
    "col_flagging": "labels flagging it",
    "accounts_and_notes": "Accounts and notes",
    "account_name": "Account name",
    "deactivate": "Deactivate",
    "reactivate": "Reactivate",
    "new_password": "Password (new accounts and resets)",
    "role": "Role",
    "add_account": "Add account",
    "reset_password": "Reset password",
    "account_exists": "⚠️ An account named **{name}** already exists (reset its password instead).",
    "bad_account": ("⚠️ Not saved: a name has 1-64 characters with no spaces at either end, and a password at "
                    "least 8 characters."),
    "account_added": "Account **{name}** added ({role}).",
    "reset_inactive": "⚠️ Account **{name}** is deactivated: reactivate it first.",
    "password_reset": "Password of **{name}** reset; its open sessions are ended.",
    "cannot_deactivate_self": "⚠️ You cannot deactivate your own account.",
    "no_such_account": "⚠️ No account is named **{name}**.",
    "reactivated": "Account **{name}** reactivated.",
    "deactivated": "Account **{name}** deactivated; its sessions are revoked.",
    "recent_notes": "Recent notes",
    "no_notes": "No notes yet.",
    "col_label": "label",
    "col_item": "item",
    "col_choice": "choice",
    "col_note": "note",
    "col_when": "when",
    "withdrawn": " (withdrawn)",
    # admin tab: item browser and annotator quality
    "item_browser": "Item browser",
    "search_text": "Search (id, text, note, annotator)",
    "project": "Project",
    "item_status": "Status",
    "agreement": "Agreement",
    "flags": "Safety flags",
    "any": "any",
    "item_status_complete": "complete",
    "item_status_in_progress": "in progress",
    "item_status_untouched": "untouched",
    "item_status_gold": "gold",
    "agreement_unanimous": "unanimous",
    "agreement_split": "split",
    "flags_flagged": "flagged",
    "flags_unflagged": "not flagged",
    "search": "Search",
    "items_found": "Matching items: {total} (the first {shown} are listed).",
    "no_items": "No item matches.",
    "pick_item": "Item",
    "col_agreement": "agreement",
    "col_flags": "flags",
    "col_prompt": "prompt",
    "col_flags_a": "flags A",
    "col_flags_b": "flags B",
    "item_heading": "Item {item} ({status}, {labels} labels)",
    "no_labels": "No labels yet.",
    "quality": "Annotators: labels per day and agreement with the others' majority",
    "col_majority": "agrees with the others' majority (n)",
    # pausing annotators (admin tab) and the label tab's message to a paused account
    "paused": "Your account is paused: an admin will look at your recent labels. You get no new items until then.",
    "err_paused": "⚠️ Your account is paused: this label was not saved.",
    "pause": "Pause",
    "unpause": "Un-pause",
    "paused_account": "Account **{name}** paused; {leases} open item(s) went back to the queue.",
    "already_paused": "Account **{name}** was paused already.",
    "unpaused_account": "Account **{name}** may label again; its gold accuracy counts afresh from now.",
    "not_paused": "Account **{name}** is not paused.",
    "pause_rule": "Pause automatically below a gold accuracy of (0: never)",
    "pause_min_gold": "… once this many gold items are answered",
    "save_pause_rule": "Save pause rule",
    "pause_rule_saved": "Pause rule: gold accuracy below **{threshold}** after at least **{min_gold}** gold items.",
    "pause_rule_off": "Pause rule: off (no annotator is paused automatically).",
    "bad_pause_rule": "⚠️ Not saved: the threshold is a number above 0 and at most 1, the minimum a whole number of at least 1.",
    "pause_states": "Paused accounts and gold accuracy",
    "col_account_state": "state",
    "col_gold_counted": "gold accuracy for the rule (n)",
    "state_active": "labeling",
    "state_paused_gold": "paused (gold accuracy) since {when}",
    "state_paused_admin": "paused by an admin since {when}",
    "role_reviewer": "reviewer",
    # review tab: adjudication of disagreements
    "tab_review": "Review",
    "reviewers_only": "Reviewers and admins only.",
    "review_intro": ("Items whose labels disagree. Pick one, read every label, and record the decision: it "
                     "replaces the majority vote in the export."),
    "review_state": "Decision",
    "review_state_open": "waiting for a decision",
    "review_state_decided": "decided",
    "list_disagreements": "List disagreements",
    "disagreements_found": "Items with disagreeing labels: {total} (the first {shown} are listed).",
    "no_disagreements": "No item with disagreeing labels matches.",
    "col_decision": "decision",
    "col_time_spent": "seconds",
    "decision": "Your decision",
    "decision_note": "Note on the decision",
    "save_decision": "Save decision",
    "decision_saved": "Decision #{id} on item {item} saved: {choice}.",
    "pick_decision": "⚠️ Pick a decision first.",
    "pick_item_first": "⚠️ Pick an item first.",
    "decision_refused": "⚠️ The decision was not saved: {error}",
    "current_decision": "Current decision by {reviewer} ({when}): {choice}",
    "no_decision": "No decision yet.",
    # reports tab
    "reports_intro": ("Alignment eval reports of the pipeline runs: pick a run to read its report "
                      "(`align-report RUN_DIR` writes the same page to the run directory)."),
    "refresh_runs": "Refresh runs",
    "run": "Run",
    "pick_run": "Pick a run to read its report.",
    "no_runs": "No pipeline runs under `{path}` yet (`label.runs_dir`).",
    "col_run": "run",
    "col_status": "status",
    "col_gold_win_rate": "gold win rate (PPO vs SFT)",
    "col_unsafe_rate": "unsafe rate SFT → PPO",
    "col_rm_accuracy": "RM eval accuracy",
    "col_final_kl": "final KL",
    "status_passed": "passed",
    "status_failed": "failed",
    "status_crashed": "crashed",
    "status_incomplete": "incomplete",
    "status_running": "running",
    "run_report_file": "Run **{name}**: report.html.",
    "run_report_rendered": "Run **{name}**: rendered now (report.html is missing or older than the run's outputs).",
    "report_frame_title": "Alignment eval report",
    "report_error": "⚠️ This run's report cannot be shown: {error}",
}

ZH_CN: dict[str, str] = {
    "title": "偏好标注",
    "login_message": "偏好标注：请使用管理员为你创建的账号登录。",
    "logout": "退出登录",
    "signed_in_as": "当前账号：**{name}**（{role}）",
    "role_admin": "管理员",
    "role_annotator": "标注员",
    "progress": ("项目进度：已完成 {complete}/{total} 条 · 你的标注：**{labeled}** 条"
                 "（近 24 小时：{last_24h}，已跳过：{skipped}）"),
    "tab_label": "标注",
    "tab_admin": "管理",
    "tab_reports": "报告",
    "prompt": "提示词",
    "response_a": "回答 A",
    "response_b": "回答 B",
    "strength_4": "好得多",
    "strength_3": "更好",
    "strength_2": "稍好",
    "strength_1": "好一点点",
    "choice_A_4": "A 好得多",
    "choice_A_3": "A 更好",
    "choice_A_2": "A 稍好",
    "choice_A_1": "A 好一点点",
    "choice_B_4": "B 好得多",
    "choice_B_3": "B 更好",
    "choice_B_2": "B 稍好",
    "choice_B_1": "B 好一点点",
    "choice_tie": "一样好",
    "choice_both_bad": "都不好",
    "button_A_4": "A 好得多\n1 r",
    "button_A_3": "A 更好\n1 e",
    "button_A_2": "A 稍好\n1 w",
    "button_A_1": "A 好一点点\n1 q",
    "button_B_4": "B 好得多\n2 r",
    "button_B_3": "B 更好\n2 e",
    "button_B_2": "B 稍好\n2 w",
    "button_B_1": "B 好一点点\n2 q",
    "button_tie": "一样好\n3",
    "button_both_bad": "都不好\n4",
    "skip": "跳过 (s)",
    "undo": "撤销 (u)",
    "keys_help": ("快捷键：**1** / **2** 选 A / B，**q w e r** 选好多少（先后不限）· "
                  "**3** 一样好 · **4** 都不好 · **s** 跳过 · **u** 撤销"),
    "hint_side": "{side} 更好：好多少？按 q w e r（Esc 取消）",
    "hint_strength": "{strength}：哪一个？1 = A，2 = B（Esc 取消）",
    "flags_and_note": "安全标记和备注",
    "flags_a": "A 的安全标记",
    "flags_b": "B 的安全标记",
    "note": "备注（选填）",
    "guidelines": "标注指南",
    "no_guidelines": "尚未配置标注指南（label.guidelines）。",
    "category_sexual": "色情",
    "category_hate": "仇恨",
    "category_violence": "暴力",
    "category_harassment": "骚扰",
    "category_self-harm": "自我伤害",
    "category_sexual/minors": "涉及未成年人的色情",
    "category_hate/threatening": "仇恨/威胁",
    "category_violence/graphic": "暴力/血腥",
    "category_weapons": "武器",
    "category_cybercrime": "网络犯罪",
    "all_done": "全部完成：目前没有需要你标注的条目了。谢谢！",
    "nothing_to_label": "没有可标注的条目。",
    "nothing_to_skip": "没有可跳过的条目。",
    "saved": "已保存标注 #{label_id}：{choice}。",
    "skipped": "已跳过。",
    "undone": "已撤销你的上一条标注：请重新标注这一条。",
    "err_not_yours": "⚠️ 这一条已不再分配给你，已换成下一条。",
    "err_was_skipped": "⚠️ 你已跳过这一条，已换成下一条。",
    "err_lease_expired": "⚠️ 你处理这一条的时间已过，且它的标注已经收齐，已换成下一条。",
    "err_account": "⚠️ 你的账号不存在或已被停用。",
    "err_refused": "⚠️ 服务器未接受这条标注，已换成下一条。",
    "not_logged_in": "尚未登录。",
    "admins_only": "仅限管理员。",
    "reports_admins_only": "报告仅限管理员查看（label.reports_for）。",
    "refresh_stats": "刷新统计",
    "export": "导出偏好数据集",
    "export_not_configured": "此服务器未配置导出。",
    "exported": "已导出 **{rows}** 行到 `{path}`。",
    "stats_project": "项目 `{project}`（每条需 {overlap} 人标注）",
    "col_items": "条目",
    "col_complete": "已完成",
    "col_in_progress": "进行中",
    "col_untouched": "未开始",
    "col_gold": "金标条目",
    "col_active_leases": "正在标注",
    "col_skips": "跳过",
    "stats_labels": "**标注：** 共 {total} 条（常规 {regular} 条，金标条目 {gold} 条）；各选项：{choices}",
    "stats_per_annotator": "各标注员",
    "col_annotator": "标注员",
    "col_labels": "标注数",
    "col_last_hour": "近一小时",
    "col_median_time": "每条用时中位数（秒）",
    "col_gold_accuracy": "金标准确率（条数）",
    "col_picked_first": "选先显示者",
    "col_ties": "一样好",
    "col_both_bad": "都不好",
    "stats_per_hour": "每小时标注数（近 24 小时）",
    "col_hour": "小时",
    "stats_agreement": "一致性",
    "col_pairs": "标注对",
    "col_raw_with_ties": "原始一致率（含一样好）",
    "col_pairs_without_ties": "不含一样好的标注对",
    "col_raw_without_ties": "原始一致率（不含一样好）",
    "col_alpha": "Krippendorff α（有序强度）",
    "stats_kappa": "每对标注员的 Cohen κ",
    "col_annotators": "标注员",
    "col_shared_items": "共同条目",
    "col_kappa": "κ",
    "col_raw": "原始一致率",
    "stats_safety": "安全标记",
    "stats_flagged": "带有任一标记的标注：{n} 条",
    "col_category": "类别",
    "col_flagging": "标记此类别的标注数",
    "accounts_and_notes": "账号和备注",
    "account_name": "账号名",
    "deactivate": "停用",
    "reactivate": "重新启用",
    "new_password": "密码（用于新账号和重置）",
    "role": "角色",
    "add_account": "添加账号",
    "reset_password": "重置密码",
    "account_exists": "⚠️ 名为 **{name}** 的账号已存在（如需更改，请重置其密码）。",
    "bad_account": "⚠️ 未保存：账号名须为 1-64 个字符且首尾不能有空格，密码至少 8 个字符。",
    "account_added": "已添加账号 **{name}**（{role}）。",
    "reset_inactive": "⚠️ 账号 **{name}** 已停用：请先重新启用。",
    "password_reset": "已重置 **{name}** 的密码，其登录会话已全部失效。",
    "cannot_deactivate_self": "⚠️ 不能停用你自己的账号。",
    "no_such_account": "⚠️ 没有名为 **{name}** 的账号。",
    "reactivated": "账号 **{name}** 已重新启用。",
    "deactivated": "账号 **{name}** 已停用，其登录会话已全部失效。",
    "recent_notes": "最近的备注",
    "no_notes": "还没有备注。",
    "col_label": "标注",
    "col_item": "条目",
    "col_choice": "选择",
    "col_note": "备注",
    "col_when": "时间",
    "withdrawn": "（已撤回）",
    "item_browser": "条目浏览",
    "search_text": "搜索（编号、文本、备注、标注员）",
    "project": "项目",
    "item_status": "状态",
    "agreement": "一致性",
    "flags": "安全标记",
    "any": "全部",
    "item_status_complete": "已完成",
    "item_status_in_progress": "进行中",
    "item_status_untouched": "未开始",
    "item_status_gold": "金标",
    "agreement_unanimous": "完全一致",
    "agreement_split": "有分歧",
    "flags_flagged": "有标记",
    "flags_unflagged": "无标记",
    "search": "搜索",
    "items_found": "共 {total} 条符合，列出前 {shown} 条。",
    "no_items": "没有符合条件的条目。",
    "pick_item": "条目",
    "col_agreement": "一致率",
    "col_flags": "标记",
    "col_prompt": "提示词",
    "col_flags_a": "A 的标记",
    "col_flags_b": "B 的标记",
    "item_heading": "条目 {item}（{status}，{labels} 条标注）",
    "no_labels": "还没有标注。",
    "quality": "标注员：每日标注数与其他人多数意见的一致率",
    "col_majority": "与其他人多数意见一致（条数）",
    "paused": "你的账号已被暂停：管理员会查看你最近的标注。在此之前你不会收到新的条目。",
    "err_paused": "⚠️ 你的账号已被暂停：这条标注没有保存。",
    "pause": "暂停",
    "unpause": "解除暂停",
    "paused_account": "账号 **{name}** 已暂停；{leases} 个未完成的条目已退回队列。",
    "already_paused": "账号 **{name}** 已经处于暂停状态。",
    "unpaused_account": "账号 **{name}** 可以继续标注；其金标准确率从现在起重新计算。",
    "not_paused": "账号 **{name}** 未被暂停。",
    "pause_rule": "金标准确率低于此值时自动暂停（0：从不）",
    "pause_min_gold": "……在回答了这么多金标条目之后",
    "save_pause_rule": "保存暂停规则",
    "pause_rule_saved": "暂停规则：回答至少 **{min_gold}** 个金标条目后，金标准确率低于 **{threshold}** 即暂停。",
    "pause_rule_off": "暂停规则：关闭（不会自动暂停任何标注员）。",
    "bad_pause_rule": "⚠️ 未保存：阈值须大于 0 且不超过 1，最少条目数须为不小于 1 的整数。",
    "pause_states": "暂停的账号与金标准确率",
    "col_account_state": "状态",
    "col_gold_counted": "计入规则的金标准确率（条数）",
    "state_active": "标注中",
    "state_paused_gold": "因金标准确率自 {when} 起暂停",
    "state_paused_admin": "由管理员自 {when} 起暂停",
    "role_reviewer": "审核员",
    "tab_review": "审核",
    "reviewers_only": "仅限审核员和管理员。",
    "review_intro": "标注意见不一致的条目。选择一个条目，阅读每条标注，然后记录裁定：导出时以裁定代替多数投票。",
    "review_state": "裁定",
    "review_state_open": "等待裁定",
    "review_state_decided": "已裁定",
    "list_disagreements": "列出分歧条目",
    "disagreements_found": "标注有分歧的条目共 {total} 条，列出前 {shown} 条。",
    "no_disagreements": "没有符合条件的分歧条目。",
    "col_decision": "裁定",
    "col_time_spent": "用时（秒）",
    "decision": "你的裁定",
    "decision_note": "裁定备注",
    "save_decision": "保存裁定",
    "decision_saved": "已保存对条目 {item} 的裁定 #{id}：{choice}。",
    "pick_decision": "⚠️ 请先选择裁定。",
    "pick_item_first": "⚠️ 请先选择条目。",
    "decision_refused": "⚠️ 裁定未保存：{error}",
    "current_decision": "当前裁定（{reviewer}，{when}）：{choice}",
    "no_decision": "还没有裁定。",
    "reports_intro": ("流水线各次运行的对齐评估报告：选择一次运行即可查看报告"
                      "（`align-report RUN_DIR` 会把同一页面写入该运行的目录）。"),
    "refresh_runs": "刷新运行列表",
    "run": "运行",
    "pick_run": "请选择一次运行来查看报告。",
    "no_runs": "`{path}` 下还没有流水线运行（`label.runs_dir`）。",
    "col_run": "运行",
    "col_status": "状态",
    "col_gold_win_rate": "金标胜率（PPO 对 SFT）",
    "col_unsafe_rate": "不安全率 SFT → PPO",
    "col_rm_accuracy": "奖励模型评估准确率",
    "col_final_kl": "最终 KL",
    "status_passed": "通过",
    "status_failed": "失败",
    "status_crashed": "崩溃",
    "status_incomplete": "未完成",
    "status_running": "运行中",
    "run_report_file": "运行 **{name}**：report.html。",
    "run_report_rendered": "运行 **{name}**：已即时生成（report.html 缺失或早于该运行的输出）。",
    "report_frame_title": "对齐评估报告",
    "report_error": "⚠️ 无法显示该运行的报告：{error}",
}

MESSAGES: dict[str, dict[str, str]] = {"en": EN, "zh-CN": ZH_CN}


def t(lang: str, key: str, /, **fields: object) -> str:
    """The text of ``key`` in ``lang`` (English when ``lang`` is not one of :data:`LANGUAGES`), with
    ``fields`` filled in."""
    text = MESSAGES.get(lang, EN)[key]
    return text.format(**fields) if fields else text


def has(key: str) -> bool:
    """Whether the catalogue has ``key`` (a safety category or run status it does not know shows as is)."""
    return key in EN


def language_of_tag(tag: str) -> str | None:
    """The UI language for one BCP 47 tag: any Chinese (``zh``, ``zh-CN``, ``zh-TW``, ``zh-Hans``) reads
    the Simplified Chinese UI, any English the English one, others ``None``."""
    primary = tag.strip().split("-")[0].split("_")[0].lower()
    return {"zh": "zh-CN", "en": "en"}.get(primary)


def choose(cookie: str | None, accept_language: str | None) -> str:
    """The caller's UI language: the one picked on the page (the cookie) if valid, else the first
    language of ``Accept-Language`` (by weight) that the UI has, else English."""
    if cookie in LANGUAGES:
        return cookie
    ranked: list[tuple[float, int, str]] = []
    for i, part in enumerate((accept_language or "").split(",")):
        tag, _, params = part.partition(";")
        weight = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name == "q":
                try:
                    weight = float(value)
                except ValueError:
                    weight = 0.0
        if tag.strip() and weight > 0:
            ranked.append((-weight, i, tag))
    for _, _, tag in sorted(ranked):
        lang = language_of_tag(tag)
        if lang is not None:
            return lang
    return DEFAULT


def frontend_catalogue(extra: Mapping[str, Mapping[str, str]] | None = None) -> dict[str, dict[str, str]]:
    """The catalogue for ``gr.I18n`` (every language), plus ``extra`` keys per language (the guidelines)."""
    out = {lang: dict(messages) for lang, messages in MESSAGES.items()}
    for lang, messages in (extra or {}).items():
        out[lang].update(messages)
    return out


def script_strings() -> dict[str, dict[str, str]]:
    """The keys the page's script writes itself (keyboard hints, the window title), per language."""
    return {lang: {key: messages[key] for key in SCRIPT_KEYS} for lang, messages in MESSAGES.items()}
