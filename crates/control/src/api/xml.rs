//! Builds EC2 Query responses: `<{Action}Response>` in the 2016-11-15
//! namespace with `requestId` first, lowerCamelCase members, and lists as
//! wrappers of `<item>` (spec 12.2); and the standard Query protocol's
//! `<{Action}Result>` with `<member>` lists that ELBv2 answers in (spec 12.5).

use std::fmt::{Display, Write};

/// The namespace of every EC2 response.
pub const EC2_NAMESPACE: &str = "http://ec2.amazonaws.com/doc/2016-11-15/";

/// Escapes text for element content.
pub fn escape(text: &str) -> std::borrow::Cow<'_, str> {
    quick_xml::escape::escape(text)
}

/// An XML document under construction.
#[derive(Debug, Default)]
pub struct Xml {
    out: String,
}

impl Xml {
    /// A whole response for `action`: the root element, `requestId`, then
    /// what `body` writes.
    pub fn response(action: &str, request_id: &str, body: impl FnOnce(&mut Xml)) -> String {
        let mut x = Xml::default();
        x.out
            .push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        let _ = write!(x.out, "<{action}Response xmlns=\"{EC2_NAMESPACE}\">");
        x.elem("requestId", request_id);
        body(&mut x);
        let _ = write!(x.out, "</{action}Response>");
        x.out
    }

    /// A whole standard-Query-protocol response (ELBv2, spec 12.5):
    /// `<{action}Response xmlns=…><{action}Result>` around what `body`
    /// writes, then `<ResponseMetadata><RequestId>`.
    pub fn query_response(
        action: &str,
        namespace: &str,
        request_id: &str,
        body: impl FnOnce(&mut Xml),
    ) -> String {
        let mut x = Xml::default();
        x.out
            .push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        let _ = write!(x.out, "<{action}Response xmlns=\"{namespace}\">");
        let _ = write!(x.out, "<{action}Result>");
        body(&mut x);
        let _ = write!(x.out, "</{action}Result>");
        x.node("ResponseMetadata", |x| {
            x.elem("RequestId", request_id);
        });
        let _ = write!(x.out, "</{action}Response>");
        x.out
    }

    /// `<name><member>…</member>…</name>`: a list in the standard Query
    /// protocol.
    pub fn members<T>(
        &mut self,
        name: &str,
        items: impl IntoIterator<Item = T>,
        mut each: impl FnMut(&mut Xml, T),
    ) -> &mut Self {
        let _ = write!(self.out, "<{name}>");
        for item in items {
            self.out.push_str("<member>");
            each(self, item);
            self.out.push_str("</member>");
        }
        let _ = write!(self.out, "</{name}>");
        self
    }

    /// `<name>text</name>`, escaped.
    pub fn elem(&mut self, name: &str, text: impl Display) -> &mut Self {
        let text = text.to_string();
        let _ = write!(self.out, "<{name}>{}</{name}>", escape(&text));
        self
    }

    /// Escaped text with no element around it: the members of string lists
    /// such as `<cidrSet><item>…</item></cidrSet>`.
    pub fn text(&mut self, text: impl Display) -> &mut Self {
        self.out.push_str(&escape(&text.to_string()));
        self
    }

    /// `<name>text</name>` when there is a value; nothing otherwise.
    pub fn opt(&mut self, name: &str, text: Option<impl Display>) -> &mut Self {
        if let Some(t) = text {
            self.elem(name, t);
        }
        self
    }

    /// `<name>…</name>` around what `body` writes.
    pub fn node(&mut self, name: &str, body: impl FnOnce(&mut Xml)) -> &mut Self {
        let _ = write!(self.out, "<{name}>");
        body(self);
        let _ = write!(self.out, "</{name}>");
        self
    }

    /// `<name><item>…</item>…</name>`, one item per element of `items`.
    pub fn list<T>(
        &mut self,
        name: &str,
        items: impl IntoIterator<Item = T>,
        mut each: impl FnMut(&mut Xml, T),
    ) -> &mut Self {
        let _ = write!(self.out, "<{name}>");
        for item in items {
            self.out.push_str("<item>");
            each(self, item);
            self.out.push_str("</item>");
        }
        let _ = write!(self.out, "</{name}>");
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_shape() {
        let xml = Xml::response("DescribeVpcs", "r-1", |x| {
            x.list("vpcSet", ["vpc-1", "vpc-2"], |x, id| {
                x.elem("vpcId", id).opt("dhcpOptionsId", None::<&str>);
            });
        });
        assert_eq!(
            xml,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<DescribeVpcsResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\"><requestId>r-1</requestId><vpcSet><item><vpcId>vpc-1</vpcId></item><item><vpcId>vpc-2</vpcId></item></vpcSet></DescribeVpcsResponse>"
        );
    }

    #[test]
    fn query_response_shape() {
        // spec 12.5 (NLB): `<OpResponse><OpResult>…</OpResult><ResponseMetadata>`.
        let xml = Xml::query_response("DescribeListeners", "urn:x", "r-1", |x| {
            x.members("Listeners", ["a"], |x, arn| {
                x.elem("ListenerArn", arn);
            });
        });
        assert_eq!(
            xml,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<DescribeListenersResponse xmlns=\"urn:x\"><DescribeListenersResult><Listeners><member><ListenerArn>a</ListenerArn></member></Listeners></DescribeListenersResult><ResponseMetadata><RequestId>r-1</RequestId></ResponseMetadata></DescribeListenersResponse>"
        );
    }

    #[test]
    fn text_is_escaped() {
        let mut x = Xml::default();
        x.elem("value", "a<b&\"c\"");
        assert_eq!(x.out, "<value>a&lt;b&amp;&quot;c&quot;</value>");
    }
}
