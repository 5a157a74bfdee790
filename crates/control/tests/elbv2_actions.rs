//! The ELBv2 actions (spec 9 and 12.5) over the in-memory store: network
//! load balancers, target groups, targets and listeners, their quotas and
//! their error codes.

#![allow(clippy::unwrap_used)]

mod common;

use common::{Env, all, call, edit_record, first};
use openvpc_control::ApiError;
use openvpc_control::actions::Ctx;
use openvpc_control::elbv2;
use openvpc_control::query::Params;
use openvpc_control::store::Store;

fn elb(env: &Env, body: &str) -> Result<String, ApiError> {
    let ctx = Ctx {
        store: &env.store,
        account: &env.a,
        region: "us-east-1",
        request_id: "req-test",
        fleet: None,
    };
    elbv2::dispatch(&ctx, &Params::parse(body.as_bytes(), ""))
}

fn ok(env: &Env, body: &str) -> String {
    elb(env, body).unwrap_or_else(|e| panic!("{body} failed: {e}"))
}

fn code(env: &Env, body: &str) -> String {
    match elb(env, body) {
        Ok(xml) => panic!("{body} succeeded: {xml}"),
        Err(e) => {
            assert_eq!(e.status, 400, "{body}: {e}");
            e.code.into_owned()
        }
    }
}

fn subnet_in(env: &Env, cidr: &str, az: &str) -> String {
    first(
        &call(
            &env.store,
            &env.a,
            &format!(
                "Action=CreateSubnet&VpcId={}&CidrBlock={}&AvailabilityZone={az}",
                env.vpc,
                cidr.replace('/', "%2F")
            ),
        )
        .unwrap(),
        "subnetId",
    )
}

/// An NLB over two subnets in two AZs; its ARN.
fn nlb(env: &Env, name: &str) -> String {
    let a = subnet_in(env, &format!("10.0.{}.0/24", 10 + name.len()), "us-east-1a");
    let b = subnet_in(
        env,
        &format!("10.0.{}.0/24", 100 + name.len()),
        "us-east-1b",
    );
    first(
        &ok(
            env,
            &format!(
                "Action=CreateLoadBalancer&Name={name}&Type=network&Subnets.member.1={a}&Subnets.member.2={b}"
            ),
        ),
        "LoadBalancerArn",
    )
}

fn target_group(env: &Env, name: &str, extra: &str) -> String {
    first(
        &ok(
            env,
            &format!(
                "Action=CreateTargetGroup&Name={name}&Protocol=TCP&Port=80&VpcId={}{extra}",
                env.vpc
            ),
        ),
        "TargetGroupArn",
    )
}

/// A UDP target group on port 53 named `name` in the VPC, with `extra`
/// parameters; its ARN.
fn udp_target_group(env: &Env, name: &str, extra: &str) -> String {
    first(
        &ok(
            env,
            &format!(
                "Action=CreateTargetGroup&Name={name}&Protocol=UDP&Port=53&VpcId={}{extra}",
                env.vpc
            ),
        ),
        "TargetGroupArn",
    )
}

fn listener(env: &Env, lb: &str, port: u16, tg: &str) -> Result<String, ApiError> {
    elb(
        env,
        &format!(
            "Action=CreateListener&LoadBalancerArn={lb}&Protocol=TCP&Port={port}&DefaultActions.member.1.Type=forward&DefaultActions.member.1.TargetGroupArn={tg}"
        ),
    )
}

#[test]
fn create_load_balancer_answers_arn_dns_and_provisioning() {
    // spec 9.1: DNS name `<name>-<id>.elb.<region>.amazonaws.com`; the
    // Create answer shows provisioning, Describe shows the record's state
    // (provisioning until a node of its shard serves it, issue 17).
    let env = Env::new();
    let a = subnet_in(&env, "10.0.2.0/24", "us-east-1a");
    let xml = ok(
        &env,
        &format!(
            "Action=CreateLoadBalancer&Name=web&Type=network&Scheme=internal&SubnetMappings.member.1.SubnetId={a}&Tags.member.1.Key=env&Tags.member.1.Value=test"
        ),
    );
    let arn = first(&xml, "LoadBalancerArn");
    let id = arn.rsplit('/').next().unwrap();
    assert!(
        arn.starts_with(
            "arn:aws:elasticloadbalancing:us-east-1:111111111111:loadbalancer/net/web/"
        ),
        "{arn}"
    );
    assert_eq!(id.len(), 16);
    assert_eq!(
        first(&xml, "DNSName"),
        format!("web-{id}.elb.us-east-1.amazonaws.com")
    );
    assert_eq!(first(&xml, "Code"), "provisioning");
    assert_eq!(first(&xml, "Scheme"), "internal");
    assert_eq!(first(&xml, "VpcId"), env.vpc);
    assert_eq!(first(&xml, "ZoneName"), "us-east-1a");
    assert_eq!(first(&xml, "CanonicalHostedZoneId"), "Z26RNL4JYFTOTI");
    assert!(xml.contains("<CreateLoadBalancerResult><LoadBalancers><member>"));
    let described = ok(
        &env,
        &format!("Action=DescribeLoadBalancers&LoadBalancerArns.member.1={arn}"),
    );
    assert_eq!(first(&described, "Code"), "provisioning");
    assert_eq!(first(&described, "Type"), "network");
    // The fleet's lifecycle moves the state; Describe shows it, with its
    // reason.
    edit_record(&env.store, &env.a, "elb-lb", id, |v| {
        v["state"] = serde_json::json!("failed");
        v["state_reason"] = serde_json::json!("No hyperplane node serves the load balancer");
    });
    let described = ok(
        &env,
        &format!("Action=DescribeLoadBalancers&LoadBalancerArns.member.1={arn}"),
    );
    assert_eq!(first(&described, "Code"), "failed");
    assert_eq!(
        first(&described, "Reason"),
        "No hyperplane node serves the load balancer"
    );
    edit_record(&env.store, &env.a, "elb-lb", id, |v| {
        v["state"] = serde_json::json!("active");
        v["state_reason"] = serde_json::Value::Null;
    });
    let described = ok(
        &env,
        &format!("Action=DescribeLoadBalancers&LoadBalancerArns.member.1={arn}"),
    );
    assert_eq!(first(&described, "Code"), "active");
    assert!(!described.contains("<Reason>"));
}

#[test]
fn only_network_load_balancers_are_created() {
    // Task rule: application (AWS's default type) is refused clearly.
    let env = Env::new();
    for t in ["&Type=application", ""] {
        let body = format!(
            "Action=CreateLoadBalancer&Name=web{t}&Subnets.member.1={}",
            env.subnet
        );
        let e = elb(&env, &body).unwrap_err();
        assert_eq!(e.code, "ValidationError");
        assert!(
            e.message.contains("only network load balancers"),
            "{}",
            e.message
        );
    }
}

#[test]
fn load_balancer_subnets_must_exist_be_one_per_az_and_share_a_vpc() {
    let env = Env::new();
    let base = "Action=CreateLoadBalancer&Name=web&Type=network";
    assert_eq!(
        code(
            &env,
            &format!("{base}&Subnets.member.1=subnet-0123456789abcdef0")
        ),
        "SubnetNotFound"
    );
    let same_az = subnet_in(&env, "10.0.2.0/24", "us-east-1a");
    let other_az = subnet_in(&env, "10.0.3.0/24", "us-east-1a");
    assert_eq!(
        code(
            &env,
            &format!("{base}&Subnets.member.1={same_az}&Subnets.member.2={other_az}")
        ),
        "InvalidConfigurationRequest"
    );
    let vpc2 = common::vpc_with(&env.store, &env.a, "10.9.0.0/16");
    let foreign = first(
        &call(
            &env.store,
            &env.a,
            &format!("Action=CreateSubnet&VpcId={vpc2}&CidrBlock=10.9.1.0%2F24&AvailabilityZone=us-east-1b"),
        )
        .unwrap(),
        "subnetId",
    );
    assert_eq!(
        code(
            &env,
            &format!("{base}&Subnets.member.1={same_az}&Subnets.member.2={foreign}")
        ),
        "InvalidConfigurationRequest"
    );
    assert_eq!(code(&env, base), "ValidationError", "a subnet is required");
}

#[test]
fn subnets_of_another_account_are_not_found() {
    // Records are per account: another account's subnet names nothing.
    let env = Env::new();
    let body = format!(
        "Action=CreateLoadBalancer&Name=web&Type=network&Subnets.member.1={}",
        env.subnet
    );
    let other = openvpc_control::account::Account::generate("b", Some("222222222222"));
    let ctx = Ctx {
        store: &env.store,
        account: &other,
        region: "us-east-1",
        request_id: "r",
        fleet: None,
    };
    let e = elbv2::dispatch(&ctx, &Params::parse(body.as_bytes(), "")).unwrap_err();
    assert_eq!(e.code, "SubnetNotFound");
}

#[test]
fn duplicate_names_and_the_50_load_balancer_quota() {
    // spec 13: 50 NLBs per region.
    let env = Env::new();
    let body = |n: usize| {
        format!(
            "Action=CreateLoadBalancer&Name=lb{n}&Type=network&Subnets.member.1={}",
            env.subnet
        )
    };
    for n in 0..elbv2::MAX_LOAD_BALANCERS {
        ok(&env, &body(n));
    }
    assert_eq!(code(&env, &body(0)), "DuplicateLoadBalancerName");
    assert_eq!(code(&env, &body(999)), "TooManyLoadBalancers");
}

#[test]
fn describe_load_balancers_by_name_and_pages() {
    let env = Env::new();
    for n in ["a", "b", "c"] {
        ok(
            &env,
            &format!(
                "Action=CreateLoadBalancer&Name={n}&Type=network&Subnets.member.1={}",
                env.subnet
            ),
        );
    }
    let xml = ok(&env, "Action=DescribeLoadBalancers&Names.member.1=b");
    assert_eq!(all(&xml, "LoadBalancerName"), ["b"]);
    assert_eq!(
        code(&env, "Action=DescribeLoadBalancers&Names.member.1=zz"),
        "LoadBalancerNotFound"
    );
    let page1 = ok(&env, "Action=DescribeLoadBalancers&PageSize=2");
    assert_eq!(all(&page1, "LoadBalancerName"), ["a", "b"]);
    let marker = first(&page1, "NextMarker");
    let page2 = ok(
        &env,
        &format!("Action=DescribeLoadBalancers&PageSize=2&Marker={marker}"),
    );
    assert_eq!(all(&page2, "LoadBalancerName"), ["c"]);
    assert_eq!(first(&page2, "NextMarker"), "");
    assert_eq!(
        code(&env, "Action=DescribeLoadBalancers&PageSize=0"),
        "ValidationError"
    );
}

#[test]
fn attributes_default_and_deletion_protection_blocks_delete() {
    // spec 9.5: cross-zone is off by default.
    let env = Env::new();
    let lb = nlb(&env, "web");
    let xml = ok(
        &env,
        &format!("Action=DescribeLoadBalancerAttributes&LoadBalancerArn={lb}"),
    );
    assert!(xml.contains("<Key>load_balancing.cross_zone.enabled</Key><Value>false</Value>"));
    assert!(xml.contains("<Key>deletion_protection.enabled</Key><Value>false</Value>"));
    ok(
        &env,
        &format!(
            "Action=ModifyLoadBalancerAttributes&LoadBalancerArn={lb}&Attributes.member.1.Key=deletion_protection.enabled&Attributes.member.1.Value=true&Attributes.member.2.Key=load_balancing.cross_zone.enabled&Attributes.member.2.Value=true"
        ),
    );
    let xml = ok(
        &env,
        &format!("Action=DescribeLoadBalancerAttributes&LoadBalancerArn={lb}"),
    );
    assert!(xml.contains("<Key>load_balancing.cross_zone.enabled</Key><Value>true</Value>"));
    assert_eq!(
        code(
            &env,
            &format!("Action=DeleteLoadBalancer&LoadBalancerArn={lb}")
        ),
        "OperationNotPermitted"
    );
    assert_eq!(
        code(
            &env,
            &format!(
                "Action=ModifyLoadBalancerAttributes&LoadBalancerArn={lb}&Attributes.member.1.Key=nope&Attributes.member.1.Value=1"
            )
        ),
        "ValidationError"
    );
}

#[test]
fn target_group_gets_nlb_health_check_defaults() {
    // spec 9.4: TCP checks on the traffic port, 30 s, 10 s, 5 and 2.
    let env = Env::new();
    let xml = ok(
        &env,
        &format!(
            "Action=CreateTargetGroup&Name=tg&Protocol=UDP&Port=53&VpcId={}&TargetType=ip",
            env.vpc
        ),
    );
    assert_eq!(first(&xml, "HealthCheckProtocol"), "TCP");
    assert_eq!(first(&xml, "HealthCheckPort"), "traffic-port");
    assert_eq!(first(&xml, "HealthCheckIntervalSeconds"), "30");
    assert_eq!(first(&xml, "HealthCheckTimeoutSeconds"), "10");
    assert_eq!(first(&xml, "HealthyThresholdCount"), "5");
    assert_eq!(first(&xml, "UnhealthyThresholdCount"), "2");
    assert_eq!(first(&xml, "TargetType"), "ip");
    assert!(!xml.contains("HealthCheckPath"));
    // spec 9.4: HTTP checks time out after 6 s, with path / and 200-399.
    let xml = ok(
        &env,
        &format!(
            "Action=CreateTargetGroup&Name=web&Protocol=TCP&Port=80&VpcId={}&HealthCheckProtocol=HTTP",
            env.vpc
        ),
    );
    assert_eq!(first(&xml, "HealthCheckTimeoutSeconds"), "6");
    assert_eq!(first(&xml, "HealthCheckPath"), "/");
    assert_eq!(first(&xml, "HttpCode"), "200-399");
    let arn = first(&xml, "TargetGroupArn");
    let modified = ok(
        &env,
        &format!(
            "Action=ModifyTargetGroup&TargetGroupArn={arn}&HealthCheckIntervalSeconds=10&HealthCheckPath=%2Fping"
        ),
    );
    assert_eq!(first(&modified, "HealthCheckIntervalSeconds"), "10");
    assert_eq!(first(&modified, "HealthCheckPath"), "/ping");
    assert_eq!(
        code(
            &env,
            &format!("Action=ModifyTargetGroup&TargetGroupArn={arn}&HealthCheckIntervalSeconds=1")
        ),
        "ValidationError"
    );
}

#[test]
fn target_group_validation_and_duplicates() {
    let env = Env::new();
    let base = |extra: &str| {
        format!(
            "Action=CreateTargetGroup&Name=tg&Port=80&VpcId={}{extra}",
            env.vpc
        )
    };
    assert_eq!(code(&env, &base("&Protocol=HTTP")), "ValidationError");
    assert_eq!(
        code(&env, &base("&Protocol=TCP&TargetType=lambda")),
        "ValidationError"
    );
    assert_eq!(
        code(
            &env,
            "Action=CreateTargetGroup&Name=tg&Protocol=TCP&Port=80&VpcId=vpc-0123456789abcdef0"
        ),
        "ValidationError",
        "the VPC must exist"
    );
    ok(&env, &base("&Protocol=TCP"));
    assert_eq!(
        code(&env, &base("&Protocol=TCP")),
        "DuplicateTargetGroupName"
    );
    assert_eq!(
        code(
            &env,
            "Action=DescribeTargetGroups&TargetGroupArns.member.1=arn:aws:elasticloadbalancing:us-east-1:111111111111:targetgroup/x/0000000000000000"
        ),
        "TargetGroupNotFound"
    );
}

#[test]
fn listeners_forward_refuse_duplicate_ports_and_pin_the_group() {
    // spec 9.1: one forward default action; a port once per NLB.
    let env = Env::new();
    let lb = nlb(&env, "web");
    let tg = target_group(&env, "tg", "");
    let xml = listener(&env, &lb, 80, &tg).unwrap();
    let arn = first(&xml, "ListenerArn");
    assert!(arn.contains(":listener/net/web/"), "{arn}");
    assert_eq!(first(&xml, "TargetGroupArn"), tg);
    assert_eq!(
        listener(&env, &lb, 80, &tg).unwrap_err().code,
        "DuplicateListener"
    );
    let described = ok(
        &env,
        &format!("Action=DescribeListeners&LoadBalancerArn={lb}"),
    );
    assert_eq!(all(&described, "ListenerArn"), vec![arn.as_str()]);
    let groups = ok(
        &env,
        &format!("Action=DescribeTargetGroups&TargetGroupArns.member.1={tg}"),
    );
    assert!(groups.contains(&format!(
        "<LoadBalancerArns><member>{lb}</member></LoadBalancerArns>"
    )));
    assert_eq!(
        code(
            &env,
            &format!("Action=DeleteTargetGroup&TargetGroupArn={tg}")
        ),
        "ResourceInUse"
    );
    let modified = ok(
        &env,
        &format!("Action=ModifyListener&ListenerArn={arn}&Port=8080"),
    );
    assert_eq!(first(&modified, "Port"), "8080");
    ok(&env, &format!("Action=DeleteListener&ListenerArn={arn}"));
    assert_eq!(
        code(&env, &format!("Action=DeleteListener&ListenerArn={arn}")),
        "ListenerNotFound"
    );
    ok(
        &env,
        &format!("Action=DeleteTargetGroup&TargetGroupArn={tg}"),
    );
    assert_eq!(
        code(
            &env,
            &format!("Action=DescribeTargetGroups&TargetGroupArns.member.1={tg}")
        ),
        "TargetGroupNotFound"
    );
}

#[test]
fn listener_protocol_must_match_the_group() {
    let env = Env::new();
    let lb = nlb(&env, "web");
    let udp_tg = udp_target_group(&env, "u", "");
    assert_eq!(
        listener(&env, &lb, 53, &udp_tg).unwrap_err().code,
        "ValidationError",
        "a TCP listener cannot forward to a UDP group"
    );
    assert_eq!(
        listener(&env, "arn:aws:elasticloadbalancing:us-east-1:111111111111:loadbalancer/net/x/0000000000000000", 53, &udp_tg)
            .unwrap_err()
            .code,
        "LoadBalancerNotFound"
    );
}

#[test]
fn deleting_a_load_balancer_deletes_its_listeners() {
    let env = Env::new();
    let lb = nlb(&env, "web");
    let tg = target_group(&env, "tg", "");
    let l = first(&listener(&env, &lb, 80, &tg).unwrap(), "ListenerArn");
    ok(
        &env,
        &format!("Action=DeleteLoadBalancer&LoadBalancerArn={lb}"),
    );
    assert_eq!(
        code(
            &env,
            &format!("Action=DescribeListeners&ListenerArns.member.1={l}")
        ),
        "ListenerNotFound"
    );
    assert_eq!(
        code(
            &env,
            &format!("Action=DescribeLoadBalancers&LoadBalancerArns.member.1={lb}")
        ),
        "LoadBalancerNotFound"
    );
    // The group is free again.
    ok(
        &env,
        &format!("Action=DeleteTargetGroup&TargetGroupArn={tg}"),
    );
    // AWS: deleting a load balancer that is gone succeeds.
    ok(
        &env,
        &format!("Action=DeleteLoadBalancer&LoadBalancerArn={lb}"),
    );
}

#[test]
fn ip_targets_must_be_in_the_vpc_or_private_ranges() {
    // spec 9.1: ip targets in the VPC or 10/8, 100.64/10, 172.16/12,
    // 192.168/16; public IPs are refused.
    let env = Env::new();
    let tg = target_group(&env, "tg", "&TargetType=ip");
    ok(
        &env,
        &format!(
            "Action=RegisterTargets&TargetGroupArn={tg}&Targets.member.1.Id=10.0.1.10&Targets.member.2.Id=192.168.0.5&Targets.member.2.Port=8080"
        ),
    );
    assert_eq!(
        code(
            &env,
            &format!("Action=RegisterTargets&TargetGroupArn={tg}&Targets.member.1.Id=8.8.8.8")
        ),
        "InvalidTarget"
    );
    let health = ok(
        &env,
        &format!("Action=DescribeTargetHealth&TargetGroupArn={tg}"),
    );
    assert_eq!(all(&health, "Id"), ["10.0.1.10", "192.168.0.5"]);
    assert_eq!(all(&health, "Port"), ["80", "8080"]);
    ok(
        &env,
        &format!("Action=DeregisterTargets&TargetGroupArn={tg}&Targets.member.1.Id=10.0.1.10"),
    );
    let health = ok(
        &env,
        &format!("Action=DescribeTargetHealth&TargetGroupArn={tg}"),
    );
    assert_eq!(all(&health, "Id"), ["192.168.0.5"]);
    // AWS API reference, DeregisterTargets: a target that is not registered
    // (here: already deregistered) "returns successfully"; nothing changes.
    ok(
        &env,
        &format!("Action=DeregisterTargets&TargetGroupArn={tg}&Targets.member.1.Id=10.0.1.10"),
    );
    let health = ok(
        &env,
        &format!("Action=DescribeTargetHealth&TargetGroupArn={tg}"),
    );
    assert_eq!(all(&health, "Id"), ["192.168.0.5"]);
}

#[test]
fn instance_targets_go_unused_then_initial_then_what_the_probes_report() {
    // spec 9.4 target states: unused until a listener uses the group, then
    // initial until a node of the load balancer's shard reports its probes.
    let env = Env::new();
    let instance = first(
        &call(
            &env.store,
            &env.a,
            &format!(
                "Action=RunInstances&ImageId=ami-12c6146b&MinCount=1&MaxCount=1&SubnetId={}",
                env.subnet
            ),
        )
        .unwrap(),
        "instanceId",
    );
    let lb = nlb(&env, "web");
    let tg = target_group(&env, "tg", "");
    assert_eq!(
        code(
            &env,
            &format!(
                "Action=RegisterTargets&TargetGroupArn={tg}&Targets.member.1.Id=i-0123456789abcdef0"
            )
        ),
        "InvalidTarget"
    );
    ok(
        &env,
        &format!("Action=RegisterTargets&TargetGroupArn={tg}&Targets.member.1.Id={instance}"),
    );
    let health = ok(
        &env,
        &format!("Action=DescribeTargetHealth&TargetGroupArn={tg}"),
    );
    assert_eq!(first(&health, "State"), "unused");
    assert_eq!(first(&health, "Reason"), "Target.NotInUse");
    listener(&env, &lb, 80, &tg).unwrap();
    let health = ok(
        &env,
        &format!("Action=DescribeTargetHealth&TargetGroupArn={tg}"),
    );
    assert_eq!(first(&health, "State"), "initial");
    assert_eq!(first(&health, "Reason"), "Elb.RegistrationInProgress");
    assert_eq!(first(&health, "HealthCheckPort"), "80");
    // However long it waits: no probe has passed, so it is not healthy.
    let id = tg.rsplit('/').next().unwrap();
    edit_record(&env.store, &env.a, "elb-tg", id, |v| {
        v["in_use_since"] = serde_json::json!(1);
        v["targets"][0]["registered"] = serde_json::json!(1);
    });
    let health = ok(
        &env,
        &format!("Action=DescribeTargetHealth&TargetGroupArn={tg}"),
    );
    assert_eq!(first(&health, "State"), "initial");
    // A node of the shard reports the probes' verdict.
    let lb_id = lb.rsplit('/').next().unwrap();
    hyperplane(&env, lb_id, &[("hp-1", vec![])]);
    let health = ok(
        &env,
        &format!("Action=DescribeTargetHealth&TargetGroupArn={tg}"),
    );
    assert_eq!(first(&health, "State"), "initial", "no report on it yet");
    hyperplane(
        &env,
        lb_id,
        &[("hp-1", vec![report(id, &instance, 80, "healthy", None)])],
    );
    let health = ok(
        &env,
        &format!("Action=DescribeTargetHealth&TargetGroupArn={tg}"),
    );
    assert_eq!(first(&health, "State"), "healthy");
    assert!(!health.contains("<Reason>"));
    let asked = ok(
        &env,
        &format!(
            "Action=DescribeTargetHealth&TargetGroupArn={tg}&Targets.member.1.Id=i-0123456789abcdef0"
        ),
    );
    assert_eq!(first(&asked, "Reason"), "Target.NotRegistered");
}

#[test]
fn malformed_arns_are_validation_errors() {
    let env = Env::new();
    assert_eq!(
        code(
            &env,
            "Action=DescribeLoadBalancers&LoadBalancerArns.member.1=nope"
        ),
        "ValidationError"
    );
    assert_eq!(
        code(&env, "Action=DescribeListeners"),
        "ValidationError",
        "a load balancer or listener ARNs are required"
    );
    assert_eq!(code(&env, "Action=Nope"), "InvalidAction");
}

#[test]
fn tags_on_load_balancers_and_target_groups() {
    // spec 12.1: tags at create time or later; at most 50 per resource.
    let env = Env::new();
    let lb = first(
        &ok(
            &env,
            &format!(
                "Action=CreateLoadBalancer&Name=web&Type=network&Subnets.member.1={}&Tags.member.1.Key=env&Tags.member.1.Value=test",
                env.subnet
            ),
        ),
        "LoadBalancerArn",
    );
    let tg = target_group(&env, "tg", "");
    ok(
        &env,
        &format!(
            "Action=AddTags&ResourceArns.member.1={lb}&ResourceArns.member.2={tg}&Tags.member.1.Key=team&Tags.member.1.Value=net"
        ),
    );
    let xml = ok(
        &env,
        &format!("Action=DescribeTags&ResourceArns.member.1={lb}&ResourceArns.member.2={tg}"),
    );
    assert_eq!(all(&xml, "ResourceArn"), vec![lb.as_str(), tg.as_str()]);
    assert_eq!(all(&xml, "Key"), ["env", "team", "team"]);
    ok(
        &env,
        &format!("Action=RemoveTags&ResourceArns.member.1={lb}&TagKeys.member.1=env"),
    );
    let xml = ok(
        &env,
        &format!("Action=DescribeTags&ResourceArns.member.1={lb}"),
    );
    assert_eq!(all(&xml, "Key"), ["team"]);
    let many: String = (1..=50)
        .map(|i| format!("&Tags.member.{i}.Key=k{i}&Tags.member.{i}.Value=v"))
        .collect();
    assert_eq!(
        code(
            &env,
            &format!("Action=AddTags&ResourceArns.member.1={lb}{many}")
        ),
        "TooManyTags"
    );
}

#[test]
fn a_load_balancer_keeps_its_subnets() {
    // spec 9.1 and 1.7: an NLB node's ENI keeps its subnet alive.
    let env = Env::new();
    let lb = first(
        &ok(
            &env,
            &format!(
                "Action=CreateLoadBalancer&Name=web&Type=network&Subnets.member.1={}",
                env.subnet
            ),
        ),
        "LoadBalancerArn",
    );
    let delete = format!("Action=DeleteSubnet&SubnetId={}", env.subnet);
    assert_eq!(
        common::code(&env.store, &env.a, &delete),
        "DependencyViolation"
    );
    ok(
        &env,
        &format!("Action=DeleteLoadBalancer&LoadBalancerArn={lb}"),
    );
    call(&env.store, &env.a, &delete).unwrap();
}

#[test]
fn listener_pages_follow_their_markers() {
    let env = Env::new();
    let lb = nlb(&env, "web");
    for (i, port) in [80u16, 81, 82].iter().enumerate() {
        let tg = target_group(&env, &format!("tg{i}"), "");
        listener(&env, &lb, *port, &tg).unwrap();
    }
    let first_page = ok(
        &env,
        &format!("Action=DescribeListeners&LoadBalancerArn={lb}&PageSize=2"),
    );
    assert_eq!(all(&first_page, "Port"), ["80", "81"]);
    let marker = first(&first_page, "NextMarker");
    let next = ok(
        &env,
        &format!("Action=DescribeListeners&LoadBalancerArn={lb}&PageSize=2&Marker={marker}"),
    );
    assert_eq!(all(&next, "Port"), ["82"]);
}

#[test]
fn target_group_attributes_default_and_client_ip_rules() {
    // spec 9.1 defaults; spec 9.3: client IP preservation on for instance
    // targets, off for TCP ip targets, forced on for UDP ip targets.
    let env = Env::new();
    let instance_tg = target_group(&env, "inst", "");
    let xml = ok(
        &env,
        &format!("Action=DescribeTargetGroupAttributes&TargetGroupArn={instance_tg}"),
    );
    assert!(xml.contains("<Key>deregistration_delay.timeout_seconds</Key><Value>300</Value>"));
    assert!(xml.contains("<Key>preserve_client_ip.enabled</Key><Value>true</Value>"));
    assert!(xml.contains(
        "<Key>load_balancing.cross_zone.enabled</Key><Value>use_load_balancer_configuration</Value>"
    ));
    let ip_tg = target_group(&env, "ip", "&TargetType=ip");
    let xml = ok(
        &env,
        &format!("Action=DescribeTargetGroupAttributes&TargetGroupArn={ip_tg}"),
    );
    assert!(xml.contains("<Key>preserve_client_ip.enabled</Key><Value>false</Value>"));
    let xml = ok(
        &env,
        &format!(
            "Action=ModifyTargetGroupAttributes&TargetGroupArn={ip_tg}&Attributes.member.1.Key=deregistration_delay.timeout_seconds&Attributes.member.1.Value=0"
        ),
    );
    assert!(xml.contains("<Key>deregistration_delay.timeout_seconds</Key><Value>0</Value>"));
    assert_eq!(
        code(
            &env,
            &format!(
                "Action=ModifyTargetGroupAttributes&TargetGroupArn={ip_tg}&Attributes.member.1.Key=deregistration_delay.timeout_seconds&Attributes.member.1.Value=3601"
            )
        ),
        "ValidationError"
    );
    let udp = udp_target_group(&env, "udp", "&TargetType=ip");
    assert_eq!(
        code(
            &env,
            &format!(
                "Action=ModifyTargetGroupAttributes&TargetGroupArn={udp}&Attributes.member.1.Key=preserve_client_ip.enabled&Attributes.member.1.Value=false"
            )
        ),
        "InvalidConfigurationRequest"
    );
}

/// `tcp.idle_timeout.seconds` of the listener `l`, as DescribeListenerAttributes answers.
fn idle_timeout(env: &Env, l: &str) -> Vec<String> {
    all(
        &ok(
            env,
            &format!("Action=DescribeListenerAttributes&ListenerArn={l}"),
        ),
        "Value",
    )
}

fn set_listener_attribute(env: &Env, l: &str, key: &str, value: &str) -> Result<String, ApiError> {
    elb(
        env,
        &format!(
            "Action=ModifyListenerAttributes&ListenerArn={l}&Attributes.member.1.Key={key}&Attributes.member.1.Value={value}"
        ),
    )
}

#[test]
fn tcp_listener_idle_timeout_defaults_to_350_and_takes_60_to_6000() {
    // spec 9.6: TCP's idle timeout is 350 s by default, configurable 60–6000 s
    // on TCP listeners (`tcp.idle_timeout.seconds`).
    let env = Env::new();
    let lb = nlb(&env, "web");
    let tg = target_group(&env, "t", "");
    let l = first(&listener(&env, &lb, 80, &tg).unwrap(), "ListenerArn");
    let xml = ok(
        &env,
        &format!("Action=DescribeListenerAttributes&ListenerArn={l}"),
    );
    assert!(
        xml.contains("<DescribeListenerAttributesResult><Attributes><member><Key>tcp.idle_timeout.seconds</Key><Value>350</Value></member></Attributes></DescribeListenerAttributesResult>"),
        "{xml}"
    );
    let xml = set_listener_attribute(&env, &l, "tcp.idle_timeout.seconds", "60").unwrap();
    assert!(
        xml.contains("<ModifyListenerAttributesResult><Attributes><member><Key>tcp.idle_timeout.seconds</Key><Value>60</Value></member></Attributes>"),
        "{xml}"
    );
    assert_eq!(idle_timeout(&env, &l), ["60"]);
    set_listener_attribute(&env, &l, "tcp.idle_timeout.seconds", "6000").unwrap();
    assert_eq!(idle_timeout(&env, &l), ["6000"]);
    // Out of range, not a number or another key: ValidationError, and the
    // stored value stays.
    for (key, value) in [
        ("tcp.idle_timeout.seconds", "59"),
        ("tcp.idle_timeout.seconds", "6001"),
        ("tcp.idle_timeout.seconds", "abc"),
        ("tcp.idle_timeout.seconds", ""),
        ("idle_timeout.timeout_seconds", "60"),
    ] {
        assert_eq!(
            set_listener_attribute(&env, &l, key, value)
                .unwrap_err()
                .code,
            "ValidationError",
            "{key}={value}"
        );
    }
    // A request whose second attribute is refused changes nothing.
    assert_eq!(
        code(
            &env,
            &format!(
                "Action=ModifyListenerAttributes&ListenerArn={l}&Attributes.member.1.Key=tcp.idle_timeout.seconds&Attributes.member.1.Value=120&Attributes.member.2.Key=nope&Attributes.member.2.Value=1"
            )
        ),
        "ValidationError"
    );
    assert_eq!(idle_timeout(&env, &l), ["6000"]);
    assert_eq!(
        code(
            &env,
            &format!("Action=ModifyListenerAttributes&ListenerArn={l}")
        ),
        "ValidationError",
        "at least one attribute"
    );
}

#[test]
fn idle_timeout_is_for_tcp_listeners_only() {
    // spec 9.6: only TCP listeners have the setting (TLS is fixed at 350 s,
    // UDP at 120 s): other listeners show no attributes and refuse it.
    let env = Env::new();
    let lb = nlb(&env, "dns");
    let udp_tg = udp_target_group(&env, "u", "");
    let udp = first(
        &ok(
            &env,
            &format!(
                "Action=CreateListener&LoadBalancerArn={lb}&Protocol=UDP&Port=53&DefaultActions.member.1.Type=forward&DefaultActions.member.1.TargetGroupArn={udp_tg}"
            ),
        ),
        "ListenerArn",
    );
    let xml = ok(
        &env,
        &format!("Action=DescribeListenerAttributes&ListenerArn={udp}"),
    );
    assert!(xml.contains("<Attributes></Attributes>"), "{xml}");
    assert_eq!(
        set_listener_attribute(&env, &udp, "tcp.idle_timeout.seconds", "120")
            .unwrap_err()
            .code,
        "InvalidConfigurationRequest"
    );
    assert!(idle_timeout(&env, &udp).is_empty());
    // A TCP listener turned UDP loses its setting; turned back, it has the default.
    let tcp_tg = target_group(&env, "t", "");
    let tcp = first(&listener(&env, &lb, 80, &tcp_tg).unwrap(), "ListenerArn");
    set_listener_attribute(&env, &tcp, "tcp.idle_timeout.seconds", "900").unwrap();
    ok(
        &env,
        &format!(
            "Action=ModifyListener&ListenerArn={tcp}&Protocol=UDP&DefaultActions.member.1.Type=forward&DefaultActions.member.1.TargetGroupArn={udp_tg}&Port=54"
        ),
    );
    assert!(idle_timeout(&env, &tcp).is_empty());
    ok(
        &env,
        &format!(
            "Action=ModifyListener&ListenerArn={tcp}&Protocol=TCP&DefaultActions.member.1.Type=forward&DefaultActions.member.1.TargetGroupArn={tcp_tg}"
        ),
    );
    assert_eq!(idle_timeout(&env, &tcp), ["350"]);
}

#[test]
fn listener_attributes_of_unknown_listeners() {
    // spec 12.5: ListenerNotFound for a well-formed ARN that names nothing,
    // ValidationError for a string that is no listener ARN.
    let env = Env::new();
    let gone = "arn:aws:elasticloadbalancing:us-east-1:111111111111:listener/net/x/0000000000000000/0000000000000000";
    assert_eq!(
        code(
            &env,
            &format!("Action=DescribeListenerAttributes&ListenerArn={gone}")
        ),
        "ListenerNotFound"
    );
    assert_eq!(
        set_listener_attribute(&env, gone, "tcp.idle_timeout.seconds", "60")
            .unwrap_err()
            .code,
        "ListenerNotFound"
    );
    assert_eq!(
        code(&env, "Action=DescribeListenerAttributes&ListenerArn=nope"),
        "ValidationError"
    );
    assert_eq!(
        code(&env, "Action=DescribeListenerAttributes"),
        "MissingParameter"
    );
}

// ---------------------------------------------------------------- issue 17: fronts, state, draining, health

/// What a hyperplane node reports of one target (`TargetHealthReport`).
fn report(
    group_id: &str,
    target: &str,
    port: u16,
    state: &str,
    reason: Option<&str>,
) -> serde_json::Value {
    serde_json::json!({
        "target_group_id": group_id,
        "target_id": target,
        "port": port,
        "state": state,
        "reason": reason,
        "description": reason.map(|_| "Health checks failed"),
    })
}

/// Live hyperplane nodes with their reports, and the load balancer `lb_id`'s
/// shard of them in the order given, as the fleet stores them.
fn hyperplane(env: &Env, lb_id: &str, nodes: &[(&str, Vec<serde_json::Value>)]) {
    use openvpc_control::fleet::nodes::{Role, node_key};
    use openvpc_control::fleet::shards::shard_key;
    let places: Vec<&str> = nodes.iter().map(|(id, _)| *id).collect();
    for (id, reports) in nodes {
        let record = serde_json::json!({
            "node_id": id,
            "region": "us-east-1",
            "underlay_ip": "192.0.2.1",
            "registered_at": 0,
            "expires_at_ms": u64::MAX,
            "target_health": reports,
        });
        env.store
            .put(
                node_key(Role::Hyperplane, "us-east-1", id).as_bytes(),
                &serde_json::to_vec(&record).unwrap(),
            )
            .unwrap();
    }
    env.store
        .put(
            shard_key("us-east-1", &format!("elb-{lb_id}")).as_bytes(),
            &serde_json::to_vec(&serde_json::json!({ "nodes": places })).unwrap(),
        )
        .unwrap();
}

fn ec2(env: &Env, body: &str) -> String {
    call(&env.store, &env.a, body).unwrap()
}

#[test]
fn each_zone_gets_a_requester_managed_eni_described_elb_net_name_id() {
    // spec 9.1: one node per enabled AZ, each with one ENI and a static IP;
    // issue 17: an internal NLB's ENI in each subnet, `ELB net/<name>/<id>`,
    // with the private address asked for or the subnet's next free one.
    let env = Env::new();
    let a = subnet_in(&env, "10.0.2.0/24", "us-east-1a");
    let b = subnet_in(&env, "10.0.3.0/24", "us-east-1b");
    let xml = ok(
        &env,
        &format!(
            "Action=CreateLoadBalancer&Name=web&Type=network&Scheme=internal&SubnetMappings.member.1.SubnetId={a}&SubnetMappings.member.1.PrivateIPv4Address=10.0.2.50&SubnetMappings.member.2.SubnetId={b}"
        ),
    );
    let arn = first(&xml, "LoadBalancerArn");
    let id = arn.rsplit('/').next().unwrap();
    let described = ok(
        &env,
        &format!("Action=DescribeLoadBalancers&LoadBalancerArns.member.1={arn}"),
    );
    let addresses = all(&described, "PrivateIPv4Address");
    assert_eq!(addresses.len(), 2, "{described}");
    assert_eq!(addresses[0], "10.0.2.50");
    assert!(addresses[1].starts_with("10.0.3."), "{addresses:?}");
    // An internal NLB has no public address.
    assert!(!described.contains("<IpAddress>"));
    let enis = ec2(
        &env,
        &format!(
            "Action=DescribeNetworkInterfaces&Filter.1.Name=description&Filter.1.Value.1=ELB%20net/web/{id}"
        ),
    );
    assert_eq!(all(&enis, "networkInterfaceId").len(), 2, "{enis}");
    assert_eq!(all(&enis, "interfaceType"), ["network_load_balancer"; 2]);
    assert_eq!(all(&enis, "requesterManaged"), ["true"; 2]);
    assert_eq!(all(&enis, "requesterId"), ["amazon-elb"; 2]);
    // The interface's status, then its attachment's.
    assert_eq!(
        all(&enis, "status"),
        ["in-use", "attached", "in-use", "attached"]
    );
    let mut ips = all(&enis, "privateIpAddress");
    ips.dedup();
    assert!(ips.contains(&"10.0.2.50".to_owned()), "{ips:?}");
    // AWS: the ENI is in use by the load balancer; only deleting the load
    // balancer deletes it (InvalidParameterValue, "... is currently in use").
    let eni = first(&enis, "networkInterfaceId");
    assert_eq!(
        common::code(
            &env.store,
            &env.a,
            &format!("Action=DeleteNetworkInterface&NetworkInterfaceId={eni}")
        ),
        "InvalidParameterValue"
    );
    // ... nor detached: its attachment is the service's (AWS:
    // OperationNotPermitted, "You are not allowed to manage 'ela-attach'
    // attachments.").
    let attachment = first(&enis, "attachmentId");
    assert!(attachment.starts_with("ela-attach-"), "{attachment}");
    assert_eq!(first(&enis, "instanceOwnerId"), "amazon-aws");
    assert_eq!(
        common::code(
            &env.store,
            &env.a,
            &format!("Action=DetachNetworkInterface&AttachmentId={attachment}")
        ),
        "OperationNotPermitted"
    );
    // Its address is taken in the subnet.
    let taken = common::code(
        &env.store,
        &env.a,
        &format!("Action=CreateNetworkInterface&SubnetId={a}&PrivateIpAddress=10.0.2.50"),
    );
    assert_ne!(taken, "", "the NLB's address is not free");
    ok(
        &env,
        &format!("Action=DeleteLoadBalancer&LoadBalancerArn={arn}"),
    );
    let enis = ec2(
        &env,
        "Action=DescribeNetworkInterfaces&Filter.1.Name=requester-managed&Filter.1.Value.1=true",
    );
    assert!(all(&enis, "networkInterfaceId").is_empty(), "{enis}");
    // The address went back to the subnet.
    ec2(
        &env,
        &format!("Action=CreateNetworkInterface&SubnetId={a}&PrivateIpAddress=10.0.2.50"),
    );
}

#[test]
fn internet_facing_zones_get_their_elastic_ip_or_a_pool_address() {
    // spec 9.1: internet-facing NLBs may take one EIP per subnet; issue 17:
    // a zone without one gets a public address from the region's pool.
    let env = Env::new();
    common::attached_igw(&env.store, &env.a, &env.vpc);
    let a = subnet_in(&env, "10.0.2.0/24", "us-east-1a");
    let b = subnet_in(&env, "10.0.3.0/24", "us-east-1b");
    let alloc = common::eip(&env.store, &env.a);
    let eip_ip = first(
        &ec2(
            &env,
            &format!("Action=DescribeAddresses&AllocationId.1={alloc}"),
        ),
        "publicIp",
    );
    let arn = first(
        &ok(
            &env,
            &format!(
                "Action=CreateLoadBalancer&Name=web&Type=network&SubnetMappings.member.1.SubnetId={a}&SubnetMappings.member.1.AllocationId={alloc}&SubnetMappings.member.2.SubnetId={b}"
            ),
        ),
        "LoadBalancerArn",
    );
    let described = ok(
        &env,
        &format!("Action=DescribeLoadBalancers&LoadBalancerArns.member.1={arn}"),
    );
    let public = all(&described, "IpAddress");
    assert_eq!(public.len(), 2, "{described}");
    assert_eq!(public[0], eip_ip);
    assert_ne!(public[1], eip_ip);
    assert_eq!(all(&described, "AllocationId"), [alloc.as_str()]);
    assert_eq!(all(&described, "PrivateIPv4Address").len(), 2);
    // The EIP is associated with the zone's ENI.
    let address = ec2(
        &env,
        &format!("Action=DescribeAddresses&AllocationId.1={alloc}"),
    );
    let eni = first(&address, "networkInterfaceId");
    let described_eni = ec2(
        &env,
        &format!("Action=DescribeNetworkInterfaces&NetworkInterfaceId.1={eni}"),
    );
    assert_eq!(first(&described_eni, "publicIp"), eip_ip);
    assert_eq!(
        first(&described_eni, "interfaceType"),
        "network_load_balancer"
    );
    // A taken EIP cannot front a second load balancer.
    let c = subnet_in(&env, "10.0.4.0/24", "us-east-1c");
    let e = elb(
        &env,
        &format!(
            "Action=CreateLoadBalancer&Name=other&Type=network&SubnetMappings.member.1.SubnetId={c}&SubnetMappings.member.1.AllocationId={alloc}"
        ),
    )
    .unwrap_err();
    assert_eq!(e.code, "InvalidConfigurationRequest");
    ok(
        &env,
        &format!("Action=DeleteLoadBalancer&LoadBalancerArn={arn}"),
    );
    // The EIP stays allocated, disassociated.
    let address = ec2(
        &env,
        &format!("Action=DescribeAddresses&AllocationId.1={alloc}"),
    );
    assert!(!address.contains("<networkInterfaceId>"), "{address}");
}

#[test]
fn a_failed_create_stores_no_load_balancer_and_no_eni() {
    // Never a half-made resource: the second zone's address is outside its
    // subnet, so the first zone's ENI is not kept either.
    let env = Env::new();
    let a = subnet_in(&env, "10.0.2.0/24", "us-east-1a");
    let b = subnet_in(&env, "10.0.3.0/24", "us-east-1b");
    let e = elb(
        &env,
        &format!(
            "Action=CreateLoadBalancer&Name=web&Type=network&Scheme=internal&SubnetMappings.member.1.SubnetId={a}&SubnetMappings.member.2.SubnetId={b}&SubnetMappings.member.2.PrivateIPv4Address=10.0.9.9"
        ),
    )
    .unwrap_err();
    assert_eq!(e.code, "InvalidConfigurationRequest", "{e}");
    let enis = ec2(&env, "Action=DescribeNetworkInterfaces");
    assert!(all(&enis, "networkInterfaceId").is_empty(), "{enis}");
    assert!(all(&ok(&env, "Action=DescribeLoadBalancers"), "LoadBalancerArn").is_empty());
    // A chosen private address is for internal load balancers only.
    let e = elb(
        &env,
        &format!(
            "Action=CreateLoadBalancer&Name=web&Type=network&SubnetMappings.member.1.SubnetId={a}&SubnetMappings.member.1.PrivateIPv4Address=10.0.2.9"
        ),
    )
    .unwrap_err();
    assert_eq!(e.code, "InvalidConfigurationRequest");
}

#[test]
fn tls_listeners_are_refused_as_unsupported_until_certificates_exist() {
    // issue 17: TLS needs certificates; AWS's error for a protocol the load
    // balancer does not support is UnsupportedProtocol.
    let env = Env::new();
    let lb = nlb(&env, "web");
    let tg = target_group(&env, "tg", "");
    let e = elb(
        &env,
        &format!(
            "Action=CreateListener&LoadBalancerArn={lb}&Protocol=TLS&Port=443&Certificates.member.1.CertificateArn=arn:aws:acm:us-east-1:111111111111:certificate/x&DefaultActions.member.1.Type=forward&DefaultActions.member.1.TargetGroupArn={tg}"
        ),
    )
    .unwrap_err();
    assert_eq!(e.code, "UnsupportedProtocol");
    assert!(e.message.contains("certificate"), "{e}");
    let l = first(&listener(&env, &lb, 443, &tg).unwrap(), "ListenerArn");
    assert_eq!(
        code(
            &env,
            &format!("Action=ModifyListener&ListenerArn={l}&Protocol=TLS")
        ),
        "UnsupportedProtocol"
    );
    // The listener is unchanged.
    let described = ok(
        &env,
        &format!("Action=DescribeListeners&ListenerArns.member.1={l}"),
    );
    assert_eq!(first(&described, "Protocol"), "TCP");
}

#[test]
fn bad_targets_and_ports_get_elbv2_errors() {
    // issue 17, bad input: targets outside the VPC or terminated are
    // InvalidTarget; ports outside 1-65535 are ValidationError.
    let env = Env::new();
    let tg = target_group(&env, "tg", "");
    let other_vpc = first(
        &ec2(&env, "Action=CreateVpc&CidrBlock=10.9.0.0%2F16"),
        "vpcId",
    );
    let other_subnet = common::subnet(&env.store, &env.a, &other_vpc, "10.9.1.0/24");
    let run = |subnet: &str| {
        first(
            &ec2(
                &env,
                &format!(
                    "Action=RunInstances&ImageId=ami-12c6146b&MinCount=1&MaxCount=1&SubnetId={subnet}"
                ),
            ),
            "instanceId",
        )
    };
    let outside = run(&other_subnet);
    assert_eq!(
        code(
            &env,
            &format!("Action=RegisterTargets&TargetGroupArn={tg}&Targets.member.1.Id={outside}")
        ),
        "InvalidTarget"
    );
    let gone = run(&env.subnet);
    ec2(
        &env,
        &format!("Action=TerminateInstances&InstanceId.1={gone}"),
    );
    edit_record(&env.store, &env.a, "i", &gone, |v| {
        v["state"] = serde_json::json!("terminated");
    });
    assert_eq!(
        code(
            &env,
            &format!("Action=RegisterTargets&TargetGroupArn={tg}&Targets.member.1.Id={gone}")
        ),
        "InvalidTarget"
    );
    let inside = run(&env.subnet);
    for port in ["0", "65536"] {
        assert_eq!(
            code(
                &env,
                &format!(
                    "Action=RegisterTargets&TargetGroupArn={tg}&Targets.member.1.Id={inside}&Targets.member.1.Port={port}"
                )
            ),
            "ValidationError",
            "port {port}"
        );
    }
    let lb = nlb(&env, "web");
    assert_eq!(
        listener(&env, &lb, 0, &tg).unwrap_err().code,
        "ValidationError"
    );
    assert_eq!(
        code(
            &env,
            &format!(
                "Action=CreateListener&LoadBalancerArn={lb}&Protocol=TCP&Port=65536&DefaultActions.member.1.Type=forward&DefaultActions.member.1.TargetGroupArn={tg}"
            )
        ),
        "ValidationError"
    );
    assert_eq!(
        code(
            &env,
            &format!(
                "Action=CreateTargetGroup&Name=p&Protocol=TCP&Port=70000&VpcId={}",
                env.vpc
            )
        ),
        "ValidationError"
    );
    // An IP target outside the VPC's CIDRs and the private ranges.
    let ip_tg = target_group(&env, "iptg", "&TargetType=ip");
    assert_eq!(
        code(
            &env,
            &format!(
                "Action=RegisterTargets&TargetGroupArn={ip_tg}&Targets.member.1.Id=203.0.113.7"
            )
        ),
        "InvalidTarget"
    );
}

/// `(Id, State, Reason)` of each DescribeTargetHealth row.
fn health_rows(env: &Env, tg: &str) -> Vec<(String, String, String)> {
    let xml = ok(
        env,
        &format!("Action=DescribeTargetHealth&TargetGroupArn={tg}"),
    );
    xml.split("<member>")
        .skip(1)
        .map(|m| {
            let reason = if m.contains("<Reason>") {
                first(m, "Reason")
            } else {
                String::new()
            };
            (first(m, "Id"), first(m, "State"), reason)
        })
        .collect()
}

#[test]
fn deregistered_targets_drain_for_the_delay_then_go() {
    // spec 9.4: a deregistered target is `draining`
    // (Target.DeregistrationInProgress) for the deregistration delay
    // (default 300 s), then gone; registering it again makes it fresh.
    let env = Env::new();
    let lb = nlb(&env, "web");
    let tg = target_group(&env, "tg", "&TargetType=ip");
    let tg_id = tg.rsplit('/').next().unwrap().to_owned();
    listener(&env, &lb, 80, &tg).unwrap();
    ok(
        &env,
        &format!(
            "Action=RegisterTargets&TargetGroupArn={tg}&Targets.member.1.Id=10.0.1.10&Targets.member.2.Id=10.0.1.11"
        ),
    );
    ok(
        &env,
        &format!("Action=DeregisterTargets&TargetGroupArn={tg}&Targets.member.1.Id=10.0.1.10"),
    );
    let rows = health_rows(&env, &tg);
    assert_eq!(
        rows[0],
        (
            "10.0.1.10".to_owned(),
            "draining".to_owned(),
            "Target.DeregistrationInProgress".to_owned()
        )
    );
    assert_eq!(rows[1].1, "initial");
    // Registered again while draining: fresh.
    ok(
        &env,
        &format!("Action=RegisterTargets&TargetGroupArn={tg}&Targets.member.1.Id=10.0.1.10"),
    );
    assert_eq!(health_rows(&env, &tg)[0].1, "initial");
    // Deregistered again; 299 s later it still drains, at 300 s it is gone.
    ok(
        &env,
        &format!("Action=DeregisterTargets&TargetGroupArn={tg}&Targets.member.1.Id=10.0.1.10"),
    );
    let now = openvpc_model::time::now_secs();
    edit_record(&env.store, &env.a, "elb-tg", &tg_id, |v| {
        v["targets"][0]["deregistered_at"] = serde_json::json!(now - 299);
    });
    assert_eq!(health_rows(&env, &tg)[0].1, "draining");
    edit_record(&env.store, &env.a, "elb-tg", &tg_id, |v| {
        v["targets"][0]["deregistered_at"] = serde_json::json!(now - 300);
    });
    let rows = health_rows(&env, &tg);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].0, "10.0.1.11");
    // The delay is the group's attribute: 0 removes at once.
    ok(
        &env,
        &format!(
            "Action=ModifyTargetGroupAttributes&TargetGroupArn={tg}&Attributes.member.1.Key=deregistration_delay.timeout_seconds&Attributes.member.1.Value=0"
        ),
    );
    ok(
        &env,
        &format!("Action=DeregisterTargets&TargetGroupArn={tg}&Targets.member.1.Id=10.0.1.11"),
    );
    assert!(health_rows(&env, &tg).is_empty());
}

#[test]
fn target_health_comes_from_the_first_live_shard_node_that_reports_it() {
    // spec 9.4 / issue 17: the states and reason codes of the probes, as
    // the load balancer's shard's nodes report them; none yet is initial.
    let env = Env::new();
    let lb = nlb(&env, "web");
    let lb_id = lb.rsplit('/').next().unwrap();
    let tg = target_group(&env, "tg", "&TargetType=ip");
    let tg_id = tg.rsplit('/').next().unwrap();
    listener(&env, &lb, 80, &tg).unwrap();
    ok(
        &env,
        &format!(
            "Action=RegisterTargets&TargetGroupArn={tg}&Targets.member.1.Id=10.0.1.10&Targets.member.2.Id=10.0.1.11&Targets.member.3.Id=10.0.1.12"
        ),
    );
    hyperplane(
        &env,
        lb_id,
        &[
            (
                "hp-2",
                vec![report(
                    tg_id,
                    "10.0.1.10",
                    80,
                    "unhealthy",
                    Some("Target.FailedHealthChecks"),
                )],
            ),
            (
                "hp-1",
                vec![
                    report(tg_id, "10.0.1.10", 80, "healthy", None),
                    report(tg_id, "10.0.1.11", 80, "unhealthy", Some("Target.Timeout")),
                ],
            ),
        ],
    );
    let rows = health_rows(&env, &tg);
    assert_eq!(
        rows,
        [
            (
                "10.0.1.10".to_owned(),
                "unhealthy".to_owned(),
                "Target.FailedHealthChecks".to_owned()
            ),
            (
                "10.0.1.11".to_owned(),
                "unhealthy".to_owned(),
                "Target.Timeout".to_owned()
            ),
            (
                "10.0.1.12".to_owned(),
                "initial".to_owned(),
                "Elb.RegistrationInProgress".to_owned()
            ),
        ]
    );
    // Health checks turned off: the control plane's own verdict wins.
    ok(
        &env,
        &format!("Action=ModifyTargetGroup&TargetGroupArn={tg}&HealthCheckEnabled=false"),
    );
    assert_eq!(health_rows(&env, &tg)[0].2, "Target.HealthCheckDisabled");
}
