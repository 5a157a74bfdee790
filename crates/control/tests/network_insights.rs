//! Reachability Analyzer paths over the in-memory store, without HTTP:
//! CreateNetworkInsightsPath, DescribeNetworkInsightsPaths and
//! DeleteNetworkInsightsPath with every field, endpoints by ID and ARN, the
//! error codes, client tokens, tags and tag filters, DryRun, and account
//! isolation (issue 14 item 4 and its "Bad input"; spec 12.1).

#![allow(clippy::unwrap_used)]

mod common;

use common::{Env, all, attached_igw, call, code, first};
use openvpc_control::account::Account;
use openvpc_control::store::Store;

/// The first instance of a RunInstances in the environment's subnet.
fn instance(e: &Env) -> String {
    first(
        &e.ok(&format!(
            "Action=RunInstances&ImageId=ami-12c6146b&MinCount=1&MaxCount=1&SubnetId={}",
            e.subnet
        )),
        "instanceId",
    )
}

fn path(e: &Env, query: &str) -> String {
    first(
        &e.ok(&format!("Action=CreateNetworkInsightsPath{query}")),
        "networkInsightsPathId",
    )
}

fn describe_ids(e: &Env, query: &str) -> Vec<String> {
    all(
        &e.ok(&format!("Action=DescribeNetworkInsightsPaths{query}")),
        "networkInsightsPathId",
    )
}

// Issue 14 (4): a path between two instances with every field, shown by
// Create and Describe in botocore's shape, then deleted.
#[test]
fn create_describe_delete_round_trip() {
    let e = Env::new();
    let (src, dst) = (instance(&e), instance(&e));
    let xml = e.ok(&format!(
        "Action=CreateNetworkInsightsPath&Source={src}&Destination={dst}&SourceIp=10.0.1.10&DestinationIp=10.0.1.20&Protocol=tcp&DestinationPort=443&ClientToken=tok-1&TagSpecification.1.ResourceType=network-insights-path&TagSpecification.1.Tag.1.Key=Name&TagSpecification.1.Tag.1.Value=web"
    ));
    assert!(
        xml.contains("<CreateNetworkInsightsPathResponse xmlns="),
        "{xml}"
    );
    let id = first(&xml, "networkInsightsPathId");
    assert!(id.starts_with("nip-") && id.len() == 4 + 17, "{id}");
    assert_eq!(
        first(&xml, "networkInsightsPathArn"),
        format!("arn:aws:ec2:us-east-1:111111111111:network-insights-path/{id}")
    );
    let created = first(&xml, "createdDate");
    assert!(
        created.len() == 24 && created.ends_with(".000Z"),
        "{created}"
    );
    assert_eq!(first(&xml, "source"), src);
    assert_eq!(first(&xml, "destination"), dst);
    assert_eq!(
        first(&xml, "sourceArn"),
        format!("arn:aws:ec2:us-east-1:111111111111:instance/{src}")
    );
    assert_eq!(
        first(&xml, "destinationArn"),
        format!("arn:aws:ec2:us-east-1:111111111111:instance/{dst}")
    );
    assert_eq!(first(&xml, "sourceIp"), "10.0.1.10");
    assert_eq!(first(&xml, "destinationIp"), "10.0.1.20");
    assert_eq!(first(&xml, "protocol"), "tcp");
    assert_eq!(first(&xml, "destinationPort"), "443");
    assert!(
        xml.contains("<tagSet><item><key>Name</key><value>web</value></item></tagSet>"),
        "{xml}"
    );
    // No filter was given, so none is shown (the filters: see
    // address_only_destination).
    assert!(!xml.contains("filterAt"), "{xml}");
    // The response carries no clientToken (botocore's model has none).
    assert!(!xml.contains("clientToken"), "{xml}");

    let described = e.ok(&format!(
        "Action=DescribeNetworkInsightsPaths&NetworkInsightsPathId.1={id}"
    ));
    assert!(
        described.contains("<networkInsightsPathSet><item><networkInsightsPathId>"),
        "{described}"
    );
    // Describe shows what Create showed.
    let item = |x: &str| {
        x.split_once("<networkInsightsPathId>")
            .unwrap()
            .1
            .split_once("<tagSet>")
            .unwrap()
            .0
            .to_owned()
    };
    assert_eq!(item(&described), item(&xml));

    let deleted = e.ok(&format!(
        "Action=DeleteNetworkInsightsPath&NetworkInsightsPathId={id}"
    ));
    assert_eq!(first(&deleted, "networkInsightsPathId"), id);
    assert!(describe_ids(&e, "").is_empty());
    // Gone: Describe and Delete name it with the path's NotFound code.
    assert_eq!(
        e.err(&format!(
            "Action=DescribeNetworkInsightsPaths&NetworkInsightsPathId.1={id}"
        )),
        "InvalidNetworkInsightsPathId.NotFound"
    );
    assert_eq!(
        e.err(&format!(
            "Action=DeleteNetworkInsightsPath&NetworkInsightsPathId={id}"
        )),
        "InvalidNetworkInsightsPathId.NotFound"
    );
}

// Issue 14 (4): ENIs and internet gateways, by ID or ARN; an ARN is shown
// back as the ID in `source` and the ARN in `sourceArn`.
#[test]
fn enis_gateways_and_arns() {
    let e = Env::new();
    let eni = e.eni("");
    let igw = attached_igw(&e.store, &e.a, &e.vpc);
    let eni_arn = format!("arn:aws:ec2:us-east-1:111111111111:network-interface/{eni}");
    let igw_arn = format!("arn:aws:ec2:us-east-1:111111111111:internet-gateway/{igw}");
    let xml = e.ok(&format!(
        "Action=CreateNetworkInsightsPath&Source={}&Destination={}&Protocol=udp&DestinationPort=53",
        urlencode(&igw_arn),
        urlencode(&eni_arn)
    ));
    assert_eq!(first(&xml, "source"), igw);
    assert_eq!(first(&xml, "sourceArn"), igw_arn);
    assert_eq!(first(&xml, "destination"), eni);
    assert_eq!(first(&xml, "destinationArn"), eni_arn);
    assert_eq!(first(&xml, "protocol"), "udp");
    // By ID, the same ARNs are made.
    let xml = e.ok(&format!(
        "Action=CreateNetworkInsightsPath&Source={eni}&Destination={igw}&Protocol=tcp"
    ));
    assert_eq!(first(&xml, "sourceArn"), eni_arn);
    assert_eq!(first(&xml, "destinationArn"), igw_arn);
    assert!(!xml.contains("<destinationPort>"), "{xml}");
}

fn urlencode(s: &str) -> String {
    s.replace(':', "%3A").replace('/', "%2F")
}

// AWS: with no Destination, FilterAtSource.DestinationAddress names the
// destination, and a port range in the filter replaces DestinationPort.
#[test]
fn address_only_destination() {
    let e = Env::new();
    let src = instance(&e);
    let xml = e.ok(&format!(
        "Action=CreateNetworkInsightsPath&Source={src}&Protocol=tcp&FilterAtSource.DestinationAddress=203.0.113.7&FilterAtSource.DestinationPortRange.FromPort=80&FilterAtSource.DestinationPortRange.ToPort=80&FilterAtSource.SourceAddress=10.0.1.9&FilterAtDestination.SourcePortRange.FromPort=1024"
    ));
    assert!(!xml.contains("<destination>"), "{xml}");
    assert!(!xml.contains("<destinationArn>"), "{xml}");
    assert!(
        xml.contains("<filterAtSource><sourceAddress>10.0.1.9</sourceAddress><destinationAddress>203.0.113.7</destinationAddress><destinationPortRange><fromPort>80</fromPort><toPort>80</toPort></destinationPortRange></filterAtSource><filterAtDestination><sourcePortRange><fromPort>1024</fromPort></sourcePortRange></filterAtDestination>"),
        "{xml}"
    );
    // Describe shows the same filters.
    let id = first(&xml, "networkInsightsPathId");
    let described = e.ok(&format!(
        "Action=DescribeNetworkInsightsPaths&NetworkInsightsPathId.1={id}"
    ));
    assert_eq!(
        described.split_once("<filterAtSource>").unwrap().1,
        xml.split_once("<filterAtSource>").unwrap().1.replace(
            "</networkInsightsPath></CreateNetworkInsightsPathResponse>",
            "</item></networkInsightsPathSet></DescribeNetworkInsightsPathsResponse>"
        )
    );
    // Neither a Destination nor an address: AWS's MissingParameter.
    assert_eq!(
        e.err(&format!(
            "Action=CreateNetworkInsightsPath&Source={src}&Protocol=tcp&DestinationIp=10.0.1.20"
        )),
        "MissingParameter"
    );
}

// Issue 14 "Bad input": each wrong input gets AWS's code, and a failed
// call stores nothing.
#[test]
fn error_codes() {
    let e = Env::new();
    let src = instance(&e);
    let create = |q: &str| e.err(&format!("Action=CreateNetworkInsightsPath&{q}"));
    let ok = format!("Source={src}&Destination={src}");
    // Well-formed IDs that name nothing: each kind's NotFound.
    assert_eq!(
        create(&format!(
            "Source=i-0123456789abcdef0&Destination={src}&Protocol=tcp"
        )),
        "InvalidInstanceID.NotFound"
    );
    assert_eq!(
        create(&format!(
            "Source={src}&Destination=eni-0123456789abcdef0&Protocol=tcp"
        )),
        "InvalidNetworkInterfaceID.NotFound"
    );
    assert_eq!(
        create(&format!(
            "Source=igw-0123456789abcdef0&Destination={src}&Protocol=tcp"
        )),
        "InvalidInternetGatewayID.NotFound"
    );
    // Malformed IDs: the kind's Malformed code.
    assert_eq!(
        create(&format!("Source=i-XYZ&Destination={src}&Protocol=tcp")),
        "InvalidInstanceID.Malformed"
    );
    assert_eq!(
        create(&format!("Source={src}&Destination=eni-nope&Protocol=tcp")),
        "InvalidNetworkInterfaceID.Malformed"
    );
    assert_eq!(
        create(&format!(
            "Source={src}&Destination={}&Protocol=tcp",
            urlencode("arn:aws:ec2:us-east-1:111111111111:internet-gateway/i-12345678")
        )),
        "InvalidInternetGatewayID.Malformed"
    );
    // Kinds AWS accepts and openvpc does not serve yet, and kinds no path
    // can name.
    for other in [
        "tgw-0123456789abcdef0",
        "vpce-0123456789abcdef0",
        "pcx-0123456789abcdef0",
        "vgw-0123456789abcdef0",
        "vpc-0123456789abcdef0",
        "nonsense",
    ] {
        let xml = call(
            &e.store,
            &e.a,
            &format!(
                "Action=CreateNetworkInsightsPath&Source={src}&Destination={other}&Protocol=tcp"
            ),
        )
        .unwrap_err();
        assert_eq!(xml.code, "InvalidParameterValue", "{other}");
        if other.starts_with("tgw-") {
            assert!(
                xml.message.contains("not support transit gateways"),
                "{}",
                xml.message
            );
        }
    }
    // Protocol, ports and addresses.
    assert_eq!(
        create(&format!("{ok}&Protocol=icmp")),
        "InvalidParameterValue"
    );
    assert_eq!(create(&ok), "MissingParameter");
    assert_eq!(
        create(&format!("Destination={src}&Protocol=tcp")),
        "MissingParameter"
    );
    assert_eq!(
        create(&format!("{ok}&Protocol=tcp&DestinationPort=65536")),
        "InvalidParameterValue"
    );
    assert_eq!(
        create(&format!("{ok}&Protocol=tcp&DestinationPort=-1")),
        "InvalidParameterValue"
    );
    assert_eq!(
        create(&format!("{ok}&Protocol=tcp&SourceIp=10.0.1")),
        "InvalidParameterValue"
    );
    assert_eq!(
        create(&format!(
            "{ok}&Protocol=tcp&FilterAtSource.DestinationPortRange.FromPort=90&FilterAtSource.DestinationPortRange.ToPort=80"
        )),
        "InvalidParameterValue"
    );
    // A filter replaces the plain parameters it overlaps.
    assert_eq!(
        create(&format!(
            "{ok}&Protocol=tcp&DestinationPort=80&FilterAtSource.SourceAddress=10.0.1.9"
        )),
        "InvalidParameterCombination"
    );
    assert_eq!(
        create(&format!(
            "{ok}&Protocol=tcp&DestinationIp=10.0.1.9&FilterAtDestination.DestinationAddress=10.0.1.9"
        )),
        "InvalidParameterCombination"
    );
    // Tags of another resource type are refused.
    assert_eq!(
        create(&format!(
            "{ok}&Protocol=tcp&TagSpecification.1.ResourceType=instance&TagSpecification.1.Tag.1.Key=a"
        )),
        "InvalidParameterValue"
    );
    // Describe and Delete: malformed and unknown path IDs.
    assert_eq!(
        e.err("Action=DeleteNetworkInsightsPath&NetworkInsightsPathId=nip-0123456789abcdef0"),
        "InvalidNetworkInsightsPathId.NotFound"
    );
    assert_eq!(
        e.err("Action=DeleteNetworkInsightsPath&NetworkInsightsPathId=vpc-0123456789abcdef0"),
        "InvalidNetworkInsightsPathId.Malformed"
    );
    assert_eq!(
        e.err("Action=DeleteNetworkInsightsPath"),
        "MissingParameter"
    );
    assert_eq!(
        e.err("Action=DescribeNetworkInsightsPaths&NetworkInsightsPathId.1=nip-0123456789abcdef0"),
        "InvalidNetworkInsightsPathId.NotFound"
    );
    // botocore: MaxResults is 1 to 100.
    assert_eq!(
        e.err("Action=DescribeNetworkInsightsPaths&MaxResults=101"),
        "InvalidParameterValue"
    );
    // Nothing above stored a path.
    assert!(describe_ids(&e, "").is_empty());
}

// spec 12.1: the same token with the same parameters answers with the first
// path; with other parameters it is IdempotentParameterMismatch.
#[test]
fn client_token_idempotency() {
    let e = Env::new();
    let (src, dst) = (instance(&e), instance(&e));
    let q =
        format!("&Source={src}&Destination={dst}&Protocol=tcp&DestinationPort=22&ClientToken=abc");
    let first_id = path(&e, &q);
    assert_eq!(path(&e, &q), first_id);
    assert_eq!(describe_ids(&e, ""), [first_id.as_str()]);
    assert_eq!(
        e.err(&format!(
            "Action=CreateNetworkInsightsPath&Source={src}&Destination={dst}&Protocol=tcp&DestinationPort=23&ClientToken=abc"
        )),
        "IdempotentParameterMismatch"
    );
    // Another token (or none: botocore always sends one, a raw request may
    // not) makes another path.
    let other = path(
        &e,
        &format!("&Source={src}&Destination={dst}&Protocol=tcp&DestinationPort=22&ClientToken=abd"),
    );
    assert_ne!(other, first_id);
    let untokened = path(&e, &format!("&Source={src}&Destination={dst}&Protocol=tcp"));
    assert_eq!(describe_ids(&e, "").len(), 3, "{untokened}");
}

// Isolation (issue 14 "Bad input"): another account neither sees nor
// deletes the path, nor names the first account's resources, by ID or ARN.
#[test]
fn accounts_are_isolated() {
    let e = Env::new();
    let src = instance(&e);
    let id = path(&e, &format!("&Source={src}&Destination={src}&Protocol=tcp"));
    let b = Account::generate("b", Some("222222222222"));
    let b_vpc = first(
        &call(&e.store, &b, "Action=CreateVpc&CidrBlock=10.0.0.0%2F16").unwrap(),
        "vpcId",
    );
    let b_igw = attached_igw(&e.store, &b, &b_vpc);
    assert!(
        all(
            &call(&e.store, &b, "Action=DescribeNetworkInsightsPaths").unwrap(),
            "networkInsightsPathId"
        )
        .is_empty()
    );
    assert_eq!(
        code(
            &e.store,
            &b,
            &format!("Action=DescribeNetworkInsightsPaths&NetworkInsightsPathId.1={id}")
        ),
        "InvalidNetworkInsightsPathId.NotFound"
    );
    assert_eq!(
        code(
            &e.store,
            &b,
            &format!("Action=DeleteNetworkInsightsPath&NetworkInsightsPathId={id}")
        ),
        "InvalidNetworkInsightsPathId.NotFound"
    );
    assert_eq!(
        code(
            &e.store,
            &b,
            &format!("Action=CreateTags&ResourceId.1={id}&Tag.1.Key=x&Tag.1.Value=y")
        ),
        "InvalidNetworkInsightsPathId.NotFound"
    );
    // b cannot use a's instance, by ID or by a's ARN, even toward its own
    // gateway: a path between two accounts' resources is refused.
    assert_eq!(
        code(
            &e.store,
            &b,
            &format!(
                "Action=CreateNetworkInsightsPath&Source={src}&Destination={b_igw}&Protocol=tcp"
            )
        ),
        "InvalidInstanceID.NotFound"
    );
    let a_arn = urlencode(&format!(
        "arn:aws:ec2:us-east-1:111111111111:instance/{src}"
    ));
    assert_eq!(
        code(
            &e.store,
            &b,
            &format!(
                "Action=CreateNetworkInsightsPath&Source={b_igw}&Destination={a_arn}&Protocol=tcp"
            )
        ),
        "InvalidInstanceID.NotFound"
    );
    // Nor does a's own ARN in another region name anything here.
    let elsewhere = urlencode(&format!(
        "arn:aws:ec2:eu-west-1:111111111111:instance/{src}"
    ));
    assert_eq!(
        e.err(&format!(
            "Action=CreateNetworkInsightsPath&Source={elsewhere}&Destination={src}&Protocol=tcp"
        )),
        "InvalidInstanceID.NotFound"
    );
    // a still has its path, untouched.
    assert_eq!(describe_ids(&e, ""), [id]);
}

// spec 12.1: tags through CreateTags/DeleteTags/DescribeTags, tag filters
// and the path's own filters, and pagination (MaxResults 1 to 100).
#[test]
fn tags_filters_and_pages() {
    let e = Env::new();
    let (src, dst) = (instance(&e), instance(&e));
    let web = path(
        &e,
        &format!("&Source={src}&Destination={dst}&Protocol=tcp&DestinationPort=80"),
    );
    let dns = path(
        &e,
        &format!(
            "&Source={dst}&Protocol=udp&FilterAtSource.DestinationAddress=10.0.1.53&FilterAtSource.DestinationPortRange.FromPort=53&FilterAtSource.DestinationPortRange.ToPort=53"
        ),
    );
    e.ok(&format!(
        "Action=CreateTags&ResourceId.1={web}&Tag.1.Key=app&Tag.1.Value=web"
    ));
    let tags = e.ok(&format!(
        "Action=DescribeTags&Filter.1.Name=resource-id&Filter.1.Value.1={web}"
    ));
    assert_eq!(all(&tags, "resourceType"), ["network-insights-path"]);
    assert_eq!(all(&tags, "value"), ["web"]);
    assert_eq!(
        describe_ids(&e, "&Filter.1.Name=tag:app&Filter.1.Value.1=web"),
        [web.as_str()]
    );
    assert_eq!(
        describe_ids(&e, "&Filter.1.Name=tag-key&Filter.1.Value.1=app"),
        [web.as_str()]
    );
    assert_eq!(
        describe_ids(&e, &format!("&Filter.1.Name=source&Filter.1.Value.1={src}")),
        [web.as_str()]
    );
    assert_eq!(
        describe_ids(
            &e,
            &format!("&Filter.1.Name=destination&Filter.1.Value.1={dst}")
        ),
        [web.as_str()]
    );
    assert_eq!(
        describe_ids(&e, "&Filter.1.Name=protocol&Filter.1.Value.1=udp"),
        [dns.as_str()]
    );
    assert_eq!(
        describe_ids(&e, "&Filter.1.Name=destination-port&Filter.1.Value.1=80"),
        [web.as_str()]
    );
    assert_eq!(
        describe_ids(
            &e,
            "&Filter.1.Name=filter-at-source.destination-address&Filter.1.Value.1=10.0.1.53"
        ),
        [dns.as_str()]
    );
    assert_eq!(
        describe_ids(
            &e,
            "&Filter.1.Name=filter-at-source.destination-port-range&Filter.1.Value.1=53-53"
        ),
        [dns.as_str()]
    );
    assert!(
        describe_ids(
            &e,
            "&Filter.1.Name=filter-at-destination.source-address&Filter.1.Value.1=*"
        )
        .is_empty()
    );
    // A filter paths do not have.
    assert_eq!(
        e.err("Action=DescribeNetworkInsightsPaths&Filter.1.Name=vpc-id&Filter.1.Value.1=x"),
        "InvalidParameterValue"
    );
    e.ok(&format!(
        "Action=DeleteTags&ResourceId.1={web}&Tag.1.Key=app"
    ));
    assert!(describe_ids(&e, "&Filter.1.Name=tag-key&Filter.1.Value.1=app").is_empty());
    // One per page, in ID order, then no token.
    let mut want = [web, dns];
    want.sort();
    let page = e.ok("Action=DescribeNetworkInsightsPaths&MaxResults=1");
    assert_eq!(all(&page, "networkInsightsPathId"), [want[0].clone()]);
    let token = first(&page, "nextToken");
    let page = e.ok(&format!(
        "Action=DescribeNetworkInsightsPaths&MaxResults=1&NextToken={token}"
    ));
    assert_eq!(all(&page, "networkInsightsPathId"), [want[1].clone()]);
    assert_eq!(first(&page, "nextToken"), "");
}

// spec 12.1: DryRun answers DryRunOperation and changes nothing.
#[test]
fn dry_run() {
    let e = Env::new();
    let src = instance(&e);
    let q = format!("Source={src}&Destination={src}&Protocol=tcp");
    assert_eq!(
        e.err(&format!("Action=CreateNetworkInsightsPath&{q}&DryRun=true")),
        "DryRunOperation"
    );
    assert!(describe_ids(&e, "").is_empty());
    let id = path(&e, &format!("&{q}"));
    assert_eq!(
        e.err("Action=DescribeNetworkInsightsPaths&DryRun=true"),
        "DryRunOperation"
    );
    assert_eq!(
        e.err(&format!(
            "Action=DeleteNetworkInsightsPath&NetworkInsightsPathId={id}&DryRun=true"
        )),
        "DryRunOperation"
    );
    assert_eq!(describe_ids(&e, ""), [id]);
}

// AWS refuses to delete a path while an analysis of it exists
// (AnalysisExistsForNetworkInsightsPath); the analysis record names its
// path in `network_insights_path_id`.
#[test]
fn delete_refused_while_an_analysis_names_the_path() {
    let e = Env::new();
    let src = instance(&e);
    let id = path(&e, &format!("&Source={src}&Destination={src}&Protocol=tcp"));
    let key = format!("r/{}/us-east-1/nia/nia-0123456789abcdef0", e.a.id);
    let record = format!(
        "{{\"id\":\"nia-0123456789abcdef0\",\"network_insights_path_id\":\"{id}\",\"tags\":[]}}"
    );
    e.store.put(key.as_bytes(), record.as_bytes()).unwrap();
    assert_eq!(
        e.err(&format!(
            "Action=DeleteNetworkInsightsPath&NetworkInsightsPathId={id}"
        )),
        "AnalysisExistsForNetworkInsightsPath"
    );
    e.store.delete(key.as_bytes()).unwrap();
    e.ok(&format!(
        "Action=DeleteNetworkInsightsPath&NetworkInsightsPathId={id}"
    ));
}
