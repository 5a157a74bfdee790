//! DHCP options sets over the in-memory store, without HTTP: the default set
//! new VPCs get, option validation, Describe filters, association and the
//! refusal to delete a set in use (spec 1.4, 1.6, 12.3).

#![allow(clippy::unwrap_used)]

mod common;

use common::{account, all, call, code, first, vpc};
use openvpc_control::account::Account;
use openvpc_control::store::{MemoryStore, Store};

/// A set with a domain name and two name servers; its ID.
fn dopt(store: &dyn Store, a: &Account) -> String {
    first(
        &call(
            store,
            a,
            "Action=CreateDhcpOptions&DhcpConfiguration.1.Key=domain-name&DhcpConfiguration.1.Value.1=example.com\
             &DhcpConfiguration.2.Key=domain-name-servers&DhcpConfiguration.2.Value.1=10.0.0.6&DhcpConfiguration.2.Value.2=10.0.0.7",
        )
        .unwrap(),
        "dhcpOptionsId",
    )
}

fn vpc_dopt(store: &dyn Store, a: &Account, vpc: &str) -> String {
    first(
        &call(store, a, &format!("Action=DescribeVpcs&VpcId.1={vpc}")).unwrap(),
        "dhcpOptionsId",
    )
}

// spec 1.4 and 1.6: a new VPC is associated with the account's default set:
// one real dopt- set, AmazonProvidedDNS and ec2.internal in us-east-1,
// shared by every VPC of the account.
#[test]
fn new_vpcs_get_the_default_set() {
    let store = MemoryStore::new();
    let a = account();
    let v1 = vpc(&store, &a);
    let v2 = vpc(&store, &a);
    let d = vpc_dopt(&store, &a, &v1);
    assert!(d.starts_with("dopt-") && d.len() == 5 + 17, "{d}");
    assert_eq!(vpc_dopt(&store, &a, &v2), d);
    let xml = call(
        &store,
        &a,
        &format!("Action=DescribeDhcpOptions&DhcpOptionsId.1={d}"),
    )
    .unwrap();
    assert_eq!(all(&xml, "key"), ["domain-name", "domain-name-servers"]);
    assert_eq!(all(&xml, "value"), ["ec2.internal", "AmazonProvidedDNS"]);
    assert_eq!(first(&xml, "ownerId"), a.id);
    // spec 1.6: the default set is in use, so it cannot be deleted.
    assert_eq!(
        code(
            &store,
            &a,
            &format!("Action=DeleteDhcpOptions&DhcpOptionsId={d}")
        ),
        "DependencyViolation"
    );
}

// spec 1.4: outside us-east-1 the default domain is REGION.compute.internal.
#[test]
fn default_domain_per_region() {
    assert_eq!(
        openvpc_control::actions::dhcp_options::default_domain_name("eu-west-1"),
        "eu-west-1.compute.internal"
    );
    assert_eq!(
        openvpc_control::actions::dhcp_options::default_domain_name("us-east-1"),
        "ec2.internal"
    );
}

// spec 12.4: CreateDhcpOptions answers the set with its options and tags.
#[test]
fn create_and_describe() {
    let store = MemoryStore::new();
    let a = account();
    let xml = call(
        &store,
        &a,
        "Action=CreateDhcpOptions&DhcpConfiguration.1.Key=ntp-servers&DhcpConfiguration.1.Value.1=10.0.0.1\
         &DhcpConfiguration.2.Key=netbios-node-type&DhcpConfiguration.2.Value.1=2\
         &TagSpecification.1.ResourceType=dhcp-options&TagSpecification.1.Tag.1.Key=Name&TagSpecification.1.Tag.1.Value=lab",
    )
    .unwrap();
    let id = first(&xml, "dhcpOptionsId");
    assert!(id.starts_with("dopt-"));
    assert_eq!(all(&xml, "key")[..2], ["ntp-servers", "netbios-node-type"]);
    assert!(xml.contains("<value>lab</value>"));
    let listed = call(&store, &a, "Action=DescribeDhcpOptions").unwrap();
    assert_eq!(all(&listed, "dhcpOptionsId"), [id]);
}

// spec 12.3: invalid options are InvalidParameterValue, as AWS and moto answer.
#[test]
fn invalid_options() {
    let store = MemoryStore::new();
    let a = account();
    let bad = [
        // five servers: at most four
        "DhcpConfiguration.1.Key=ntp-servers&DhcpConfiguration.1.Value.1=1.1.1.1&DhcpConfiguration.1.Value.2=1.1.1.2&DhcpConfiguration.1.Value.3=1.1.1.3&DhcpConfiguration.1.Value.4=1.1.1.4&DhcpConfiguration.1.Value.5=1.1.1.5",
        "DhcpConfiguration.1.Key=domain-name-servers&DhcpConfiguration.1.Value.1=1.1.1.1&DhcpConfiguration.1.Value.2=1.1.1.2&DhcpConfiguration.1.Value.3=1.1.1.3&DhcpConfiguration.1.Value.4=1.1.1.4&DhcpConfiguration.1.Value.5=AmazonProvidedDNS",
        // node types are 1, 2, 4 or 8
        "DhcpConfiguration.1.Key=netbios-node-type&DhcpConfiguration.1.Value.1=0",
        "DhcpConfiguration.1.Key=netbios-node-type&DhcpConfiguration.1.Value.1=3",
        // servers are addresses
        "DhcpConfiguration.1.Key=domain-name-servers&DhcpConfiguration.1.Value.1=dns.example",
        "DhcpConfiguration.1.Key=ntp-servers&DhcpConfiguration.1.Value.1=AmazonProvidedDNS",
        "DhcpConfiguration.1.Key=netbios-name-servers&DhcpConfiguration.1.Value.1=fd00::1",
        // unknown key, empty values, repeated key, two domain values
        "DhcpConfiguration.1.Key=router&DhcpConfiguration.1.Value.1=10.0.0.1",
        "DhcpConfiguration.1.Key=domain-name",
        "DhcpConfiguration.1.Key=domain-name&DhcpConfiguration.1.Value.1=a.example&DhcpConfiguration.2.Key=domain-name&DhcpConfiguration.2.Value.1=b.example",
        "DhcpConfiguration.1.Key=domain-name&DhcpConfiguration.1.Value.1=a.example&DhcpConfiguration.1.Value.2=b.example",
        "DhcpConfiguration.1.Key=ipv6-address-preferred-lease-time&DhcpConfiguration.1.Value.1=10",
    ];
    for q in bad {
        assert_eq!(
            code(&store, &a, &format!("Action=CreateDhcpOptions&{q}")),
            "InvalidParameterValue",
            "{q}"
        );
    }
    assert_eq!(
        code(&store, &a, "Action=CreateDhcpOptions"),
        "MissingParameter"
    );
    assert_eq!(
        code(
            &store,
            &a,
            "Action=CreateDhcpOptions&DhcpConfiguration.1.Value.1=x"
        ),
        "MissingParameter"
    );
    // Nothing was stored by the refused calls.
    let listed = call(&store, &a, "Action=DescribeDhcpOptions").unwrap();
    assert!(all(&listed, "dhcpOptionsId").is_empty());
    // Four servers, AmazonProvidedDNS and IPv6 addresses are fine.
    call(
        &store,
        &a,
        "Action=CreateDhcpOptions&DhcpConfiguration.1.Key=domain-name-servers&DhcpConfiguration.1.Value.1=AmazonProvidedDNS&DhcpConfiguration.1.Value.2=fd00::53&DhcpConfiguration.1.Value.3=10.0.0.2&DhcpConfiguration.1.Value.4=10.0.0.3",
    )
    .unwrap();
}

// spec 12.1: the filters dhcp-options-id, key, value, owner-id and tags.
#[test]
fn describe_filters() {
    let store = MemoryStore::new();
    let a = account();
    let d1 = dopt(&store, &a);
    let d2 = first(
        &call(
            &store,
            &a,
            "Action=CreateDhcpOptions&DhcpConfiguration.1.Key=ntp-servers&DhcpConfiguration.1.Value.1=10.9.9.9",
        )
        .unwrap(),
        "dhcpOptionsId",
    );
    call(
        &store,
        &a,
        &format!("Action=CreateTags&ResourceId.1={d2}&Tag.1.Key=env&Tag.1.Value=prod"),
    )
    .unwrap();
    let ids = |q: &str| {
        all(
            &call(&store, &a, &format!("Action=DescribeDhcpOptions&{q}")).unwrap(),
            "dhcpOptionsId",
        )
    };
    assert_eq!(
        ids(&format!(
            "Filter.1.Name=dhcp-options-id&Filter.1.Value.1={d1}"
        )),
        vec![d1.clone()]
    );
    assert_eq!(
        ids("Filter.1.Name=key&Filter.1.Value.1=ntp-servers"),
        vec![d2.clone()]
    );
    assert_eq!(
        ids("Filter.1.Name=value&Filter.1.Value.1=10.0.0.7"),
        vec![d1.clone()]
    );
    assert_eq!(
        ids("Filter.1.Name=tag:env&Filter.1.Value.1=prod"),
        vec![d2.clone()]
    );
    assert_eq!(
        ids(&format!("Filter.1.Name=owner-id&Filter.1.Value.1={}", a.id)).len(),
        2
    );
    assert_eq!(
        code(
            &store,
            &a,
            "Action=DescribeDhcpOptions&Filter.1.Name=bogus&Filter.1.Value.1=x"
        ),
        "InvalidParameterValue"
    );
    // DescribeTags names the kind dhcp-options.
    let tags = call(
        &store,
        &a,
        &format!("Action=DescribeTags&Filter.1.Name=resource-id&Filter.1.Value.1={d2}"),
    )
    .unwrap();
    assert_eq!(first(&tags, "resourceType"), "dhcp-options");
}

// spec 12.3: unknown and malformed IDs.
#[test]
fn unknown_ids() {
    let store = MemoryStore::new();
    let a = account();
    let v = vpc(&store, &a);
    let d = dopt(&store, &a);
    assert_eq!(
        code(
            &store,
            &a,
            "Action=DescribeDhcpOptions&DhcpOptionsId.1=dopt-abcd1234"
        ),
        "InvalidDhcpOptionID.NotFound"
    );
    assert_eq!(
        code(
            &store,
            &a,
            "Action=DeleteDhcpOptions&DhcpOptionsId=dopt-abcd1234"
        ),
        "InvalidDhcpOptionID.NotFound"
    );
    assert_eq!(
        code(
            &store,
            &a,
            "Action=DeleteDhcpOptions&DhcpOptionsId=foo-abcd1234"
        ),
        "InvalidDhcpOptionsId.Malformed"
    );
    assert_eq!(
        code(
            &store,
            &a,
            &format!("Action=AssociateDhcpOptions&DhcpOptionsId=dopt-abcd1234&VpcId={v}")
        ),
        "InvalidDhcpOptionID.NotFound"
    );
    assert_eq!(
        code(
            &store,
            &a,
            &format!("Action=AssociateDhcpOptions&DhcpOptionsId={d}&VpcId=vpc-abcd1234")
        ),
        "InvalidVpcID.NotFound"
    );
    assert_eq!(
        code(
            &store,
            &a,
            &format!("Action=AssociateDhcpOptions&VpcId={v}")
        ),
        "MissingParameter"
    );
}

// spec 1.6 and 12.3: associating moves a VPC to a set, `default` leaves it
// with none, and a set in use cannot be deleted until no VPC uses it.
#[test]
fn associate_disassociate_and_delete() {
    let store = MemoryStore::new();
    let a = account();
    let v = vpc(&store, &a);
    let d = dopt(&store, &a);
    let assoc = |id: &str| {
        call(
            &store,
            &a,
            &format!("Action=AssociateDhcpOptions&DhcpOptionsId={id}&VpcId={v}"),
        )
        .unwrap()
    };
    assert!(assoc(&d).contains("<return>true</return>"));
    assert_eq!(vpc_dopt(&store, &a, &v), d);
    let by_filter = call(
        &store,
        &a,
        &format!("Action=DescribeVpcs&Filter.1.Name=dhcp-options-id&Filter.1.Value.1={d}"),
    )
    .unwrap();
    assert_eq!(all(&by_filter, "vpcId"), vec![v.clone()]);
    assert_eq!(
        code(
            &store,
            &a,
            &format!("Action=DeleteDhcpOptions&DhcpOptionsId={d}")
        ),
        "DependencyViolation"
    );
    assoc("default");
    assert_eq!(vpc_dopt(&store, &a, &v), "default");
    call(
        &store,
        &a,
        &format!("Action=DeleteDhcpOptions&DhcpOptionsId={d}"),
    )
    .unwrap();
    assert_eq!(
        code(
            &store,
            &a,
            &format!("Action=DescribeDhcpOptions&DhcpOptionsId.1={d}")
        ),
        "InvalidDhcpOptionID.NotFound"
    );
    // DryRun checks and changes nothing.
    let d2 = dopt(&store, &a);
    assert_eq!(
        code(
            &store,
            &a,
            &format!("Action=AssociateDhcpOptions&DhcpOptionsId={d2}&VpcId={v}&DryRun=true")
        ),
        "DryRunOperation"
    );
    assert_eq!(vpc_dopt(&store, &a, &v), "default");
}

// spec 1.7: deleting a VPC leaves its DHCP options set (AWS keeps it; moto
// deletes it with the VPC).
#[test]
fn delete_vpc_keeps_the_set() {
    let store = MemoryStore::new();
    let a = account();
    let v = vpc(&store, &a);
    let d = dopt(&store, &a);
    call(
        &store,
        &a,
        &format!("Action=AssociateDhcpOptions&DhcpOptionsId={d}&VpcId={v}"),
    )
    .unwrap();
    call(&store, &a, &format!("Action=DeleteVpc&VpcId={v}")).unwrap();
    call(
        &store,
        &a,
        &format!("Action=DescribeDhcpOptions&DhcpOptionsId.1={d}"),
    )
    .unwrap();
    call(
        &store,
        &a,
        &format!("Action=DeleteDhcpOptions&DhcpOptionsId={d}"),
    )
    .unwrap();
}

// Sets belong to their account: another account sees none of them.
#[test]
fn accounts_are_isolated() {
    let store = MemoryStore::new();
    let a = account();
    let b = Account::generate("b", Some("222222222222"));
    let d = dopt(&store, &a);
    assert_eq!(
        code(
            &store,
            &b,
            &format!("Action=DeleteDhcpOptions&DhcpOptionsId={d}")
        ),
        "InvalidDhcpOptionID.NotFound"
    );
    let listed = call(&store, &b, "Action=DescribeDhcpOptions").unwrap();
    assert!(all(&listed, "dhcpOptionsId").is_empty());
}
