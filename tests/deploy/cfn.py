#!/usr/bin/env python3
"""deploy/aws/jitrca.cfn.yaml against the code and against moto's CloudFormation.

1. The operations the code calls, from the code itself:
   - AWS IoT: the rows of the operation table `iot_ops` (defined in a .c file under aws/). A row
     is a brace group whose first string literal is the operation's name (also its IAM action)
     and whose second is an HTTP method; a row is tied to its enum constant by its designator
     `[AWS_IOT_X] =` or, without designators, by its position in `enum aws_iot_op` (aws/iot.h).
     A program calls an operation when its sources (comments stripped) name the constant
     AWS_IOT_X or the typed function aws_iot_x( (the constant's lowercase).
   - SQS: the string literal that is the second argument of aws_sqs_call( anywhere under aws/;
     a program calls that action when it calls aws_sqs_call with it or names the aws/ function
     whose body does.
   - jitrd's sources: every .c/.h outside aws/, cli/, tests/, bench/ and build trees; jitrctl's:
     cli/. IAM names: an IoT operation is iot:NAME; SQS's batch actions are authorised by their
     single forms (sqs:DeleteMessage covers DeleteMessageBatch).
2. The template (both IntakeMode values, conditions evaluated): JitrdRole's policy has exactly
   jitrd's actions (SQS's only with IntakeMode sqs), OperatorPolicy exactly jitrctl's; every
   action's resource is an ARN of the type it works on (RESOURCE_OF below) in the stack's
   partition, region and account, "*" only for the account-level actions; the topic rule, its
   error action, the destination, the secret and the rule's role have the expected shape.
3. Deployed into moto (JITRCA_SIM_MOTO_URL) with `aws cloudformation create-stack` in both modes
   (read back with boto3):
   the resource types moto implements are created (queues, roles, instance profile, managed
   policy; the roles' policies read back through IAM); the others (topic rule, destination,
   secret) are left out of that copy and covered by the structural checks of 2.
"""
import json
import os
import re
import subprocess
import sys
import tempfile
import time

import yaml

SRC = os.environ.get("JITRCA_SOURCE_DIR") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", ".."))
TEMPLATE = os.path.join(SRC, "deploy", "aws", "jitrca.cfn.yaml")
failures = []
passed = 0
QUIET = False


def check(ok, what):
    global passed
    if ok:
        passed += 1
    else:
        failures.append(what)
        if not QUIET:
            print("FAIL: " + what, file=sys.stderr)


# --- 1. the code ------------------------------------------------------------------------------
def strip_comments(text):
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if c == '"' or c == "'":
            j = i + 1
            while j < n and text[j] != c:
                j += 2 if text[j] == "\\" else 1
            out.append(text[i:j + 1])
            i = j + 1
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            i = n if j < 0 else j + 2
            out.append(" ")
        elif text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        else:
            out.append(c)
            i += 1
    return "".join(out)


def sources(dirs=None, exclude=()):
    for root, subdirs, files in os.walk(SRC):
        rel = os.path.relpath(root, SRC)
        top = rel.split(os.sep)[0]
        if rel != "." and (top.startswith(".") or top.startswith("build") or top in exclude):
            subdirs[:] = []
            continue
        if dirs is not None and top not in dirs:
            continue
        for f in files:
            if f.endswith((".c", ".h")):
                p = os.path.join(root, f)
                with open(p, encoding="utf-8", errors="replace") as fh:
                    yield p, strip_comments(fh.read())


def block_after(text, start):
    """The text of the brace group that opens at or after start (without the outer braces)."""
    i = text.index("{", start)
    depth = 0
    for j in range(i, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return text[i + 1:j]
    raise ValueError("unbalanced braces")


def top_groups(body):
    """(designator or None, group text) for each top-level brace group of an initializer."""
    groups, depth, start, last_end = [], 0, None, 0
    for j, ch in enumerate(body):
        if ch == "{":
            if depth == 0:
                start = j
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                before = body[last_end:start]
                m = re.search(r"\[\s*(AWS_IOT_\w+)\s*\]\s*=\s*$", before)
                groups.append((m.group(1) if m else None, body[start + 1:j]))
                last_end = j + 1
    return groups


def code_operations():
    aws = dict(sources({"aws"}))
    hdr = aws.get(os.path.join(SRC, "aws", "iot.h"), "")
    m = re.search(r"enum\s+aws_iot_op\s*\{", hdr)
    if not m:
        sys.exit("cfn: no enum aws_iot_op in aws/iot.h")
    enum = [c for c in re.findall(r"\b(AWS_IOT_\w+)\b", block_after(hdr, m.start()))
            if not c.startswith("AWS_IOT__")]
    rows = None
    for path, text in aws.items():
        t = re.search(r"\biot_ops\s*\[[^\]]*\]\s*=\s*\{", text)
        if t and path.endswith(".c"):
            rows = top_groups(block_after(text, t.end() - 1))
            where = os.path.relpath(path, SRC)
    if rows is None:
        sys.exit("cfn: no iot_ops[] table under aws/")
    ops = {}
    for pos, (desig, row) in enumerate(rows):
        lits = re.findall(r'"((?:[^"\\]|\\.)*)"', row)
        if len(lits) < 2 or lits[1] not in ("GET", "POST", "PUT", "DELETE", "PATCH"):
            sys.exit("cfn: row %d of iot_ops in %s does not start with a name and a method: %s"
                     % (pos, where, row.strip()[:80]))
        const = desig or (enum[pos] if pos < len(enum) else None)
        if const is None:
            sys.exit("cfn: row %d of iot_ops has no enum constant" % pos)
        ops[const] = lits[0]
    check(set(ops) == set(enum), "iot_ops rows (%d) and enum aws_iot_op (%d) name the same "
          "operations" % (len(ops), len(enum)))
    # SQS: the actions aws_sqs_call is given, and the aws/ functions that give them
    sqs_fn = {}   # function name -> actions in its body
    sqs_all = set()
    for path, text in aws.items():
        for a in re.findall(r'\baws_sqs_call\s*\(\s*[^,()]+,\s*"(\w+)"', text):
            sqs_all.add(a)
        for fm in re.finditer(r"\n[\w \t\*]*?\b(aws_sqs_\w+)\s*\([^;{]*\)\s*\{", text):
            body = block_after(text, fm.end() - 1)
            acts = re.findall(r'\baws_sqs_call\s*\(\s*[^,()]+,\s*"(\w+)"', body)
            if acts:
                sqs_fn[fm.group(1)] = set(acts)
    check(len(sqs_all) > 0, "SQS actions found in aws/ (aws_sqs_call(q, \"Action\", ...))")
    return ops, sqs_fn, sqs_all, where


SQS_IAM = {"DeleteMessageBatch": "DeleteMessage", "SendMessageBatch": "SendMessage",
           "ChangeMessageVisibilityBatch": "ChangeMessageVisibility"}


def used_by(program_sources, ops, sqs_fn):
    text = "\n".join(t for _, t in program_sources)
    iot = set()
    for const, name in ops.items():
        fn = "aws_iot_" + const[len("AWS_IOT_"):].lower()
        if re.search(r"\b%s\b" % const, text) or re.search(r"\b%s\s*\(" % fn, text):
            iot.add("iot:" + name)
    sqs = set()
    for fn, acts in sqs_fn.items():
        if re.search(r"\b%s\s*\(" % fn, text):
            sqs |= {"sqs:" + SQS_IAM.get(a, a) for a in acts}
    for a in re.findall(r'\baws_sqs_call\s*\(\s*[^,()]+,\s*"(\w+)"', text):
        sqs.add("sqs:" + SQS_IAM.get(a, a))
    return iot, sqs


# --- 2. the template --------------------------------------------------------------------------
class CfnLoader(yaml.SafeLoader):
    pass


def _tag(loader, suffix, node):
    name = {"Ref": "Ref", "Condition": "Condition"}.get(suffix, "Fn::" + suffix)
    if isinstance(node, yaml.ScalarNode):
        v = loader.construct_scalar(node)
        if suffix == "GetAtt":
            v = v.split(".", 1)
        return {name: v}
    if isinstance(node, yaml.SequenceNode):
        return {name: loader.construct_sequence(node, deep=True)}
    return {name: loader.construct_mapping(node, deep=True)}


CfnLoader.add_multi_constructor("!", _tag)


def resolve(v, conds):
    """Fn::If evaluated with conds, AWS::NoValue dropped."""
    if isinstance(v, dict):
        if set(v) == {"Fn::If"}:
            c, a, b = v["Fn::If"]
            return resolve(a if conds[c] else b, conds)
        out = {}
        for k, x in v.items():
            r = resolve(x, conds)
            if r != {"Ref": "AWS::NoValue"}:
                out[k] = r
        return out
    if isinstance(v, list):
        return [r for r in (resolve(x, conds) for x in v) if r != {"Ref": "AWS::NoValue"}]
    return v


ARN = "arn:${AWS::Partition}:iot:${AWS::Region}:${AWS::AccountId}:"
# The resource each IoT action works on (AWS IoT's IAM table). "*": account-level actions.
RESOURCE_OF = {
    "iot:DescribeCertificate": {"cert/*"},
    "iot:UpdateCertificate": {"cert/*"},
    "iot:AttachPolicy": {"cert/*"},
    "iot:AttachThingPrincipal": {"cert/*", "thing/*"},
    "iot:DetachThingPrincipal": {"cert/*", "thing/*"},
    "iot:ListPrincipalThings": {"cert/*"},
    "iot:ListAttachedPolicies": {"cert/*"},
    "iot:RegisterCertificate": {"cert/*"},
    "iot:RegisterCertificateWithoutCA": {"cert/*"},
    "iot:CreateThing": {"thing/*"},
    "iot:DescribeThing": {"thing/*"},
    "iot:UpdateThing": {"thing/*"},
    "iot:ListThingGroupsForThing": {"thing/*"},
    "iot:AddThingToThingGroup": {"thing/*", "thinggroup/*"},
    "iot:RemoveThingFromThingGroup": {"thing/*", "thinggroup/*"},
    "iot:CreatePolicy": {"policy/${DevicePolicyName}"},
    "iot:GetPolicy": {"policy/${DevicePolicyName}"},
    "iot:CreatePolicyVersion": {"policy/${DevicePolicyName}"},
    "iot:ListPolicyVersions": {"policy/${DevicePolicyName}"},
    "iot:DeletePolicyVersion": {"policy/${DevicePolicyName}"},
    "iot:ListCertificatesByCA": {"cacert/*"},
    "iot:DescribeCACertificate": {"cacert/*"},
    "iot:UpdateCACertificate": {"cacert/*"},
    "iot:ConfirmTopicRuleDestination": {"*"},
    "iot:GetRegistrationCode": {"*"},
    "iot:RegisterCACertificate": {"*"},
    "sqs:ReceiveMessage": {"EventsQueue"},
    "sqs:DeleteMessage": {"EventsQueue"},
}


def resource_key(r):
    if r == "*":
        return "*"
    if isinstance(r, dict) and "Fn::Sub" in r and isinstance(r["Fn::Sub"], str):
        s = r["Fn::Sub"]
        return s[len(ARN):] if s.startswith(ARN) else "bad:" + s
    if isinstance(r, dict) and "Fn::GetAtt" in r and r["Fn::GetAtt"][1] == "Arn":
        return r["Fn::GetAtt"][0]
    return "bad:" + json.dumps(r)


def policy_actions(doc, label):
    """{action: set of resource keys} of a policy document, checking its shape."""
    acts = {}
    for st in doc["Statement"]:
        check(st.get("Effect") == "Allow" and "NotAction" not in st and "NotResource" not in st,
              "%s: statement %s is a plain Allow" % (label, st.get("Sid")))
        a = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
        r = st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]]
        for x in a:
            check("*" not in x, "%s: no wildcard action (%s)" % (label, x))
            acts.setdefault(x, set()).update(resource_key(y) for y in r)
    return acts


def check_resources(acts, label):
    for a, res in sorted(acts.items()):
        want = RESOURCE_OF.get(a)
        if want is None:
            check(False, "%s: %s has no known resource type: add it to RESOURCE_OF in "
                  "tests/deploy/cfn.py from AWS IoT's IAM table" % (label, a))
            continue
        check(res == want, "%s: %s on %s, want %s" % (label, a, sorted(res), sorted(want)))


def structure(t, mode):
    conds = {"UseHttp": mode == "http", "UseSqs": mode == "sqs"}
    R = t["Resources"]
    live = {k: v for k, v in R.items() if "Condition" not in v or conds[v["Condition"]]}
    rule = resolve(live["Rule"], conds)
    check(rule["Type"] == "AWS::IoT::TopicRule", "Rule is a topic rule")
    p = rule["Properties"]["TopicRulePayload"]
    check(re.fullmatch(r"SELECT \* FROM '\$aws/events/certificates/registered/#'", p["Sql"])
          is not None, "the rule selects $aws/events/certificates/registered/#: " + p["Sql"])
    check(p["AwsIotSqlVersion"] == "2016-03-23" and p["RuleDisabled"] is False,
          "rule enabled, SQL version 2016-03-23")
    check(len(p["Actions"]) == 1, "%s: one rule action" % mode)
    act = p["Actions"][0]
    if mode == "http":
        h = act.get("Http", {})
        check(h.get("Url") == {"Ref": "IntakeUrl"} and
              h.get("ConfirmationUrl") == {"Ref": "ConfirmationUrl"}, "http: URL and confirmation")
        hd = h.get("Headers", [{}])
        check(len(hd) == 1 and hd[0].get("Key") == {"Ref": "SecretHeaderName"} and
              "{{resolve:secretsmanager:${IntakeSecret}" in str(hd[0].get("Value")),
              "http: the secret header's value resolved from Secrets Manager")
        d = live.get("Destination", {})
        check(d.get("Type") == "AWS::IoT::TopicRuleDestination" and
              d["Properties"]["HttpUrlProperties"]["ConfirmationUrl"] == {"Ref": "ConfirmationUrl"}
              and d["Properties"]["Status"] == "ENABLED", "http: an enabled destination")
        s = live.get("IntakeSecret", {})
        check(s.get("Type") == "AWS::SecretsManager::Secret" and
              "GenerateSecretString" in s["Properties"], "http: a generated secret")
        check("EventsQueue" not in live, "http: no events queue")
    else:
        q = act.get("Sqs", {})
        check(q.get("QueueUrl") == {"Ref": "EventsQueue"} and
              q.get("RoleArn") == {"Fn::GetAtt": ["RuleRole", "Arn"]}, "sqs: the events queue")
        check("Destination" not in live and "IntakeSecret" not in live,
              "sqs: no destination, no secret")
    e = p.get("ErrorAction", {}).get("Sqs", {})
    check(e.get("QueueUrl") == {"Ref": "DeadLetterQueue"} and
          e.get("RoleArn") == {"Fn::GetAtt": ["RuleRole", "Arn"]},
          "the error action sends to the dead-letter queue")
    rr = resolve(live["RuleRole"], conds)["Properties"]
    check(rr["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] ==
          {"Service": "iot.amazonaws.com"}, "the rule's role is for AWS IoT")
    ra = policy_actions(rr["Policies"][0]["PolicyDocument"], "RuleRole")
    want = {"DeadLetterQueue"} | ({"EventsQueue"} if mode == "sqs" else set())
    check(ra == {"sqs:SendMessage": want}, "%s: the rule's role sends to %s only, has %s"
          % (mode, sorted(want), ra))
    return conds, live


def main():
    ops, sqs_fn, sqs_all, where = code_operations()
    jitrd_iot, jitrd_sqs = used_by(
        list(sources(None, exclude=("aws", "cli", "tests", "bench"))), ops, sqs_fn)
    cli_iot, cli_sqs = used_by(list(sources({"cli"})), ops, sqs_fn)
    print("cfn: %d IoT operations in %s; jitrd calls %s; jitrctl calls %s; SQS %s"
          % (len(ops), where, sorted(jitrd_iot | jitrd_sqs), sorted(cli_iot | cli_sqs),
             sorted(sqs_all)))
    check(len(jitrd_iot) >= 10, "jitrd calls IoT operations (parser found %d)" % len(jitrd_iot))
    check(len(jitrd_sqs) >= 2, "jitrd calls SQS actions (parser found %d)" % len(jitrd_sqs))
    with open(TEMPLATE) as fh:
        t = yaml.load(fh, Loader=CfnLoader)
    static_checks(t, jitrd_iot, jitrd_sqs, cli_iot, cli_sqs)
    mutants(t, jitrd_iot, jitrd_sqs, cli_iot, cli_sqs)
    moto_deploy(t, jitrd_iot, jitrd_sqs, cli_iot | cli_sqs)
    print("cfn: %d passed, %d failed" % (passed, len(failures)))
    sys.exit(1 if failures else 0)


def mutants(t, jitrd_iot, jitrd_sqs, cli_iot, cli_sqs):
    """The checks fail for a template that differs from the code in either direction."""
    import copy
    global passed

    def stmts(m):
        return m["Resources"]["JitrdRole"]["Properties"]["Policies"][0]["PolicyDocument"][
            "Statement"]

    def drop(m):
        for st in stmts(m):
            if "iot:UpdateCertificate" in st["Action"]:
                st["Action"].remove("iot:UpdateCertificate")

    def add(m):
        stmts(m)[1]["Action"].append("iot:DescribeThing")

    def widen(m):
        stmts(m)[1]["Resource"] = "*"

    def wrong_arn(m):
        stmts(m)[0]["Resource"] = {"Fn::Sub": ARN + "thing/*"}

    def star(m):
        stmts(m)[0]["Action"].append("iot:*")

    def operator_extra(m):
        m["Resources"]["OperatorPolicy"]["Properties"]["PolicyDocument"]["Statement"][0][
            "Action"].append("iot:UpdateCACertificate")

    def no_error_action(m):
        del m["Resources"]["Rule"]["Properties"]["TopicRulePayload"]["ErrorAction"]

    def topic(m):
        m["Resources"]["Rule"]["Properties"]["TopicRulePayload"]["Sql"] = "SELECT * FROM '#'"

    def queue_always(m):
        del m["Resources"]["JitrdQueuePolicy"]["Condition"]

    for f in (drop, add, widen, wrong_arn, star, operator_extra, no_error_action, topic,
              queue_always):
        m = copy.deepcopy(t)
        f(m)
        saved_f, saved_p = list(failures), passed
        try:
            static_checks(m, jitrd_iot, jitrd_sqs, cli_iot, cli_sqs, quiet=True)
            caught = len(failures) > len(saved_f)
        except (KeyError, IndexError, TypeError):
            caught = True
        failures[:] = saved_f
        passed = saved_p
        check(caught, "a template mutated by %s() passes the checks" % f.__name__)


def static_checks(t, jitrd_iot, jitrd_sqs, cli_iot, cli_sqs, quiet=False):
    global QUIET
    QUIET = quiet
    for mode in ("http", "sqs"):
        conds, live = structure(t, mode)
        # jitrd's permissions: the role's inline policies and the policies attached to it
        docs = [p["PolicyDocument"] for p in resolve(live["JitrdRole"], conds)["Properties"]
                .get("Policies", [])]
        for k, r in live.items():
            if r["Type"] == "AWS::IAM::Policy" and {"Ref": "JitrdRole"} in r["Properties"]["Roles"]:
                docs.append(resolve(r, conds)["Properties"]["PolicyDocument"])
        acts = {}
        for doc in docs:
            for a, res in policy_actions(doc, "JitrdRole/" + mode).items():
                acts.setdefault(a, set()).update(res)
        want = jitrd_iot | (jitrd_sqs if mode == "sqs" else set())
        extra, missing = sorted(set(acts) - want), sorted(want - set(acts))
        check(not extra and not missing, "JitrdRole (%s) differs from the code: allows what "
              "jitrd never calls %s, lacks what it calls %s" % (mode, extra, missing))
        check_resources(acts, "JitrdRole/" + mode)
        op = resolve(live["OperatorPolicy"], conds)["Properties"]["PolicyDocument"]
        oacts = policy_actions(op, "OperatorPolicy")
        want = cli_iot | cli_sqs
        extra, missing = sorted(set(oacts) - want), sorted(want - set(oacts))
        check(not extra and not missing, "OperatorPolicy differs from jitrctl's code: allows "
              "%s it never calls, lacks %s" % (extra, missing))
        check_resources(oacts, "OperatorPolicy")
    QUIET = False


# --- 3. moto ----------------------------------------------------------------------------------
def aws(*args):
    url = os.environ["JITRCA_SIM_MOTO_URL"]
    r = subprocess.run(["aws", "--endpoint-url", url, "--output", "json"] + list(args),
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError("aws %s: %s" % (" ".join(args[:2]), r.stderr.strip()))
    return json.loads(r.stdout) if r.stdout.strip() else {}


_clients = {}


def client(service):
    """boto3 against moto for the read-backs (the aws CLI, one process per call, is slow)."""
    import boto3
    if service not in _clients:
        _clients[service] = boto3.client(service, endpoint_url=os.environ["JITRCA_SIM_MOTO_URL"],
                                         region_name=os.environ.get("AWS_REGION", "us-east-1"))
    return _clients[service]


def as_doc(pd):
    """A policy document as IAM returns it: JSON, URL-encoded JSON, or (moto's managed policy
    versions made by CloudFormation) the repr of a dict."""
    if not isinstance(pd, str):
        return pd
    import ast
    import urllib.parse
    for f in (json.loads, lambda x: json.loads(urllib.parse.unquote(x)), ast.literal_eval):
        try:
            return f(pd)
        except (ValueError, SyntaxError):
            pass
    raise ValueError("unreadable policy document: " + pd[:80])


def refs(v):
    """Logical ids a value refers to."""
    if isinstance(v, dict):
        out = set()
        for k, x in v.items():
            if k == "Ref" and isinstance(x, str):
                out.add(x)
            elif k == "Fn::GetAtt":
                out.add(x[0])
            elif k == "Fn::Sub":
                s = x if isinstance(x, str) else x[0]
                out |= set(re.findall(r"\$\{([A-Za-z0-9]+)[.}]", s))
                out |= refs(x)
            else:
                out |= refs(x)
        return out
    if isinstance(v, list):
        return set().union(*[refs(x) for x in v]) if v else set()
    return set()


def moto_deploy(t, jitrd_iot, jitrd_sqs, operator):
    if not os.environ.get("JITRCA_SIM_MOTO_URL"):
        check(False, "JITRCA_SIM_MOTO_URL is unset: run under tests/sim/run_sim.py")
        return
    from moto.cloudformation.parsing import get_model_map
    known = set(get_model_map())
    skipped = sorted({r["Type"] for r in t["Resources"].values() if r["Type"] not in known})
    print("cfn: moto's CloudFormation lacks %s: checked by structure only" % skipped)
    with open(TEMPLATE) as fh:
        raw = yaml.load(fh, Loader=CfnLoader)
    drop = {k for k, r in raw["Resources"].items() if r["Type"] not in known}
    for k in drop:
        del raw["Resources"][k]
    for k in [k for k, o in raw.get("Outputs", {}).items() if refs(o) & drop]:
        del raw["Outputs"][k]
    check(not any(refs(r) & drop for r in raw["Resources"].values()),
          "what moto deploys refers to nothing it lacks")
    d = tempfile.mkdtemp(prefix="jitrca-cfn-")
    body = os.path.join(d, "moto.json")
    with open(body, "w") as fh:
        json.dump(raw, fh)
    aws("cloudformation", "validate-template", "--template-body", "file://" + TEMPLATE)
    check(True, "validate-template")
    for mode in ("http", "sqs"):
        name = "jitrca-" + mode
        params = ["ParameterKey=IntakeMode,ParameterValue=" + mode]
        if mode == "http":
            params += ["ParameterKey=IntakeUrl,ParameterValue=https://jitr.example.com/v1/jitr/events",
                       "ParameterKey=ConfirmationUrl,ParameterValue=https://jitr.example.com/"]
        aws("cloudformation", "create-stack", "--stack-name", name, "--template-body",
            "file://" + body, "--capabilities", "CAPABILITY_IAM", "--parameters", *params)
        for _ in range(120):
            st = client("cloudformation").describe_stacks(StackName=name)["Stacks"][0]
            if not st["StackStatus"].endswith("_IN_PROGRESS"):
                break
            time.sleep(0.5)
        check(st["StackStatus"] == "CREATE_COMPLETE", "%s: stack created" % mode)
        out = {o["OutputKey"]: o["OutputValue"] for o in st.get("Outputs", [])}
        res = client("cloudformation").describe_stack_resources(StackName=name)
        made = {r["LogicalResourceId"] for r in res["StackResources"]
                if r.get("LogicalResourceId") and r.get("PhysicalResourceId")}
        want = {k for k, r in raw["Resources"].items()
                if "Condition" not in r or r["Condition"] == ("UseHttp" if mode == "http" else "UseSqs")}
        check(want <= made, "%s: moto made %s, want %s" % (mode, sorted(made), sorted(want)))
        for q in ["DeadLetterQueueUrl"] + (["EventsQueueUrl"] if mode == "sqs" else []):
            check(q in out, "%s: output %s" % (mode, q))
            if q in out:
                a = client("sqs").get_queue_attributes(QueueUrl=out[q],
                                                      AttributeNames=["All"])["Attributes"]
                check(a.get("MessageRetentionPeriod") == "1209600", "%s: %s keeps 14 days" % (mode, q))
        check(("EventsQueueUrl" in out) == (mode == "sqs"), "%s: EventsQueueUrl only with sqs" % mode)
        role = out["JitrdRoleArn"].split("/")[-1]
        got = set()
        iam = client("iam")
        for pn in iam.list_role_policies(RoleName=role)["PolicyNames"]:
            doc = iam.get_role_policy(RoleName=role, PolicyName=pn)
            for s in as_doc(doc["PolicyDocument"])["Statement"]:
                got |= set(s["Action"] if isinstance(s["Action"], list) else [s["Action"]])
        exp = jitrd_iot | (jitrd_sqs if mode == "sqs" else set())
        check(got == exp, "%s: the deployed JitrdRole allows %s, the code calls %s"
              % (mode, sorted(got ^ exp), "(symmetric difference)"))
        arn = out["OperatorPolicyArn"]
        v = iam.get_policy(PolicyArn=arn)["Policy"]["DefaultVersionId"]
        pd = iam.get_policy_version(PolicyArn=arn, VersionId=v)
        pd = as_doc(pd["PolicyVersion"]["Document"])
        got = set()
        for s in pd["Statement"]:
            got |= set(s["Action"] if isinstance(s["Action"], list) else [s["Action"]])
        check(got == operator, "%s: the deployed OperatorPolicy allows %s, jitrctl calls %s"
              % (mode, sorted(got), sorted(operator)))
        client("cloudformation").delete_stack(StackName=name)
    print("cfn: deployed into moto in both modes")


if __name__ == "__main__":
    main()
