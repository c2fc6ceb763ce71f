//! Chinese and English labels. Chinese is the default; `?lang=en` (or `zh`) on any
//! page switches and is remembered in the `td_lang` cookie.

use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;

/// The language a page is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Lang {
    #[default]
    Zh,
    En,
}

impl Lang {
    fn parse(s: &str) -> Option<Self> {
        match s {
            "zh" => Some(Self::Zh),
            "en" => Some(Self::En),
            _ => None,
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            Self::Zh => "zh",
            Self::En => "en",
        }
    }

    /// From `?lang=` first, then the cookie; Chinese otherwise.
    pub fn of(query: Option<&str>, headers: &HeaderMap) -> Self {
        query_lang(query)
            .or_else(|| super::session::cookie(headers, LANG_COOKIE).and_then(|v| Self::parse(&v)))
            .unwrap_or_default()
    }

    /// The label for `key` in this language (the key itself if it has none; a test
    /// checks every key used has both).
    pub fn t(self, key: &str) -> &'static str {
        match LABELS.iter().find(|(k, _, _)| *k == key) {
            Some((_, zh, en)) => match self {
                Self::Zh => zh,
                Self::En => en,
            },
            None => "?",
        }
    }
}

const LANG_COOKIE: &str = "td_lang";

fn query_lang(query: Option<&str>) -> Option<Lang> {
    query?
        .split('&')
        .find_map(|pair| pair.strip_prefix("lang="))
        .and_then(Lang::parse)
}

/// A page opened with `?lang=xx` remembers the choice in a cookie.
pub async fn remember_lang(request: Request, next: Next) -> Response {
    let chosen = query_lang(request.uri().query());
    let mut response = next.run(request).await;
    if let Some(lang) = chosen
        && let Ok(value) = HeaderValue::from_str(&format!(
            "{LANG_COOKIE}={}; Path=/console; SameSite=Strict; Max-Age=31536000",
            lang.code()
        ))
    {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

/// (key, 中文, English).
const LABELS: &[(&str, &str, &str)] = &[
    ("console", "通道控制台", "Tongdao console"),
    ("login", "登录", "Log in"),
    ("logout", "退出", "Log out"),
    ("api-key", "API 密钥", "API key"),
    (
        "login-hint",
        "粘贴合作方或平台管理员的 API 密钥。密钥不会保存在浏览器中。",
        "Paste a partner or platform admin API key. The key is not kept in the browser.",
    ),
    ("bad-key", "密钥无效或已吊销", "Unknown or revoked key"),
    ("dashboard", "概览", "Dashboard"),
    ("modules", "模块", "Modules"),
    ("services", "业务", "Services"),
    ("messages", "短信", "Messages"),
    ("statements", "结算单", "Statements"),
    ("violations", "违规", "Violations"),
    ("approvals", "业务审批", "Approvals"),
    ("partners", "合作方", "Partners"),
    ("relay", "通道与队列", "Binds and queues"),
    ("complaints", "投诉", "Complaints"),
    ("billing", "结算与义务", "Statements and obligations"),
    ("volume", "每日发送量", "Messages per day"),
    ("delivery-rate", "送达率", "Delivery rate"),
    ("revenue", "每日收入（元）", "Revenue per day (yuan)"),
    ("subscribers", "订阅用户数", "Subscribers"),
    ("last-14-days", "最近 14 天", "last 14 days"),
    ("upload", "上传模块", "Upload a module"),
    ("upload-button", "上传", "Upload"),
    ("name", "名称", "Name"),
    ("version", "版本", "Version"),
    ("versions", "版本", "Versions"),
    ("active", "当前版本", "Active"),
    ("activate", "启用", "Activate"),
    ("rollback", "回滚到上一版本", "Roll back"),
    ("faults", "故障", "Faults"),
    ("fault-windows", "故障统计", "Fault counts"),
    ("admission", "准入检测", "Admission"),
    ("admission-passed", "通过", "passed"),
    ("admission-failed", "未通过", "failed"),
    ("admission-report", "准入检测报告", "Admission report"),
    ("check", "检查项", "Check"),
    ("result", "结果", "Result"),
    ("policy-hits", "内容规则命中", "Content policy hits"),
    ("corpus-calls", "测试调用", "Corpus calls"),
    ("input", "输入", "Input"),
    ("outcome", "结果", "Outcome"),
    (
        "pending-activation",
        "待管理员批准的启用",
        "Activation awaiting the admin",
    ),
    ("activation-requests", "模块启用审批", "Module activations"),
    ("refuse", "拒绝", "Refuse"),
    ("requested-by", "申请人", "Requested by"),
    (
        "activation-approval",
        "启用需审批",
        "Activations need approval",
    ),
    ("approval-on", "要求审批", "Require approval"),
    ("approval-off", "取消审批", "Stop requiring"),
    ("kind", "类型", "Kind"),
    ("export", "导出函数", "Export"),
    ("message", "信息", "Message"),
    ("at", "时间", "Time"),
    ("count", "次数", "Count"),
    ("size", "大小", "Size"),
    ("uploaded", "上传时间", "Uploaded"),
    ("description", "说明", "Description"),
    ("code", "代码", "Code"),
    ("status", "状态", "Status"),
    ("partner", "合作方", "Partner"),
    ("terms", "资费与条款", "Terms"),
    ("live-terms", "生效条款", "Live terms"),
    ("pending-terms", "待审条款", "Pending draft"),
    ("keywords", "指令", "Keywords"),
    ("fee-type", "计费方式", "Fee type"),
    ("price", "价格", "Price"),
    ("operators", "运营商", "Operators"),
    ("monthly-max", "每月上限", "Monthly cap"),
    ("number-ext", "扩展号", "Number extension"),
    ("module", "模块", "Module"),
    ("schedules", "推送计划", "Schedules"),
    ("next-fire", "下次推送", "Next firing"),
    ("enabled", "启用", "Enabled"),
    ("runs", "推送批次", "Runs"),
    ("run", "推送批次", "Run"),
    ("push-now", "立即推送", "Push now"),
    ("origin", "来源", "Origin"),
    ("push-date", "内容日期", "For date"),
    ("queued", "已入队", "Queued"),
    ("sent", "已提交", "Sent"),
    ("delivered", "已送达", "Delivered"),
    ("failed", "失败", "Failed"),
    ("pending", "处理中", "Pending"),
    ("blocked", "被拦截", "Blocked"),
    ("held", "暂扣", "Held"),
    ("audit", "审批记录", "Audit trail"),
    ("actor", "操作人", "By"),
    ("reason", "原因", "Reason"),
    ("approve", "批准", "Approve"),
    ("reject", "驳回", "Reject"),
    ("suspend", "暂停", "Suspend"),
    ("resume", "恢复", "Resume"),
    (
        "no-pending",
        "没有待审批的业务",
        "Nothing waits for approval",
    ),
    ("field", "项目", "Field"),
    ("recipient", "接收号码", "Recipient"),
    ("text", "内容", "Text"),
    ("segments", "分段", "Segments"),
    ("history", "状态历史", "Status history"),
    ("operator-id", "运营商消息ID", "Operator message id"),
    ("older", "更早", "Older"),
    ("filter", "筛选", "Filter"),
    ("month", "月份", "Month"),
    ("show", "查看", "Show"),
    ("download-html", "下载 HTML", "Download HTML"),
    ("download-csv", "下载 CSV", "Download CSV"),
    ("reconciliation", "对账", "Reconciliation"),
    ("alerts", "到期提醒", "Obligations due"),
    ("due", "到期日", "Due"),
    ("subject", "事项", "Subject"),
    ("detail", "详情", "Detail"),
    ("opened", "开立时间", "Opened"),
    ("resolution", "处理结果", "Resolution"),
    ("none", "无", "None"),
    ("create-partner", "新建合作方", "Create a partner"),
    ("display-name", "显示名称", "Display name"),
    ("create", "创建", "Create"),
    ("issue-key", "签发新密钥", "Issue a new key"),
    ("revoke-others", "同时吊销旧密钥", "Revoke the old keys"),
    ("key-once", "新密钥（仅显示一次）", "New key (shown once)"),
    ("binds", "运营商连接", "Operator binds"),
    ("bind", "连接", "Bind"),
    ("state", "状态", "State"),
    ("attempts", "重试次数", "Attempts"),
    ("since", "起始", "Since"),
    ("last-error", "最近错误", "Last error"),
    ("queue-depth", "队列深度", "Queue depth"),
    ("operator", "运营商", "Operator"),
    ("rule", "规则", "Rule"),
    ("excerpt", "摘录", "Excerpt"),
    ("service", "业务", "Service"),
    ("cause", "原因类别", "Cause"),
    ("note", "备注", "Note"),
    ("msisdn", "手机号", "Number"),
    ("error", "出错了", "Error"),
    ("back", "返回", "Back"),
    (
        "partners-only",
        "此页面仅供合作方使用",
        "This page is for partners",
    ),
    (
        "admin-only",
        "此页面仅供平台管理员使用",
        "This page is for the platform admin",
    ),
    ("subscribers-now", "订阅用户", "Subscribers"),
    ("variants", "内容变体", "Variants"),
    ("created", "创建时间", "Created"),
    ("finished", "完成时间", "Finished"),
    ("all-partners", "全部合作方", "all partners"),
    ("document", "结算单原文", "The statement document"),
    (
        "csrf",
        "表单已过期，请刷新页面后重试",
        "The form has expired: reload the page and try again",
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    /// Every label key used by the console's sources has both languages.
    #[test]
    fn every_key_used_has_both_languages() {
        let sources = [
            include_str!("../console.rs"),
            include_str!("billing.rs"),
            include_str!("dashboard.rs"),
            include_str!("messages.rs"),
            include_str!("modules.rs"),
            include_str!("page.rs"),
            include_str!("platform.rs"),
            include_str!("services.rs"),
            include_str!("session.rs"),
        ];
        let used = regex::Regex::new(r#"\.t\("([a-z0-9-]+)"\)"#).unwrap_or_else(|e| panic!("{e}"));
        for source in sources {
            for m in used.captures_iter(source) {
                let key = &m[1];
                assert!(
                    LABELS
                        .iter()
                        .any(|(k, zh, en)| *k == key && !zh.is_empty() && !en.is_empty()),
                    "label `{key}` is missing"
                );
            }
        }
        assert_eq!(Lang::of(Some("lang=en"), &HeaderMap::new()), Lang::En);
        assert_eq!(Lang::of(Some("x=1"), &HeaderMap::new()), Lang::Zh);
    }
}
