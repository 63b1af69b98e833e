"""AWS provider: sizes of Auto Scaling groups and EKS managed node groups (boto3); discovery is in
``providers.aws_discovery``.

An elastic pool on AWS is either an Auto Scaling group (``target.aws.autoScalingGroupName``) or
an EKS managed node group (``target.aws.eks {cluster, nodegroup}``). ``apply`` only moves the
desired size inside the group's own MinSize..MaxSize: the groups themselves belong to whoever
created them (Terraform, eksctl), so placer never creates, resizes the limits of, or deletes them.
Retrying with backoff is the apply engine's job; botocore's own retries are kept short and bounded.
"""

from __future__ import annotations

import os
import shlex
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    HTTPClientError,
    InvalidRegionError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
    ProfileNotFound,
    ReadTimeoutError,
)
from botocore.parsers import ResponseParserError

from placer.planfile import Change
from placer.retry import Retrier
from providers.base import (
    Discovered,
    ProviderError,
    bounded_nodes,
    grown_pool,
    guard,
    pause,
    pool_nodes,
    retry_after,
    retryable_http,
)

T = TypeVar("T")

# Error codes AWS services use for "slow down" and for transient server-side conditions.
THROTTLING_CODES = frozenset({
    "Throttling", "ThrottlingException", "ThrottledException", "RequestThrottledException",
    "RequestLimitExceeded", "TooManyRequestsException", "RequestThrottled", "SlowDown",
    "EC2ThrottledException", "BandwidthLimitExceeded", "ProvisionedThroughputExceededException",
})
TRANSIENT_CODES = frozenset({
    "ScalingActivityInProgress", "ResourceContention", "ResourceInUseException", "PriorRequestNotComplete",
    "ServiceUnavailable", "ServiceUnavailableException", "InternalFailure", "InternalError",
    "InternalServerError", "ServerException", "RequestTimeout", "RequestTimeoutException",
})
AUTH_CODES = frozenset({
    "AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "InvalidClientTokenId",
    "UnrecognizedClientException", "ExpiredToken", "ExpiredTokenException", "AuthFailure",
    "SignatureDoesNotMatch", "InvalidSignatureException", "MissingAuthenticationToken",
})
# of AUTH_CODES, those that refuse one call (a policy scoped to some resources), not the credentials themselves
PERMISSION_CODES = frozenset({"AccessDenied", "AccessDeniedException", "UnauthorizedOperation"})
CREDENTIALS_HINT = ("check the AWS credentials placer runs with (AWS_PROFILE, or AWS_ACCESS_KEY_ID and "
                    "AWS_SECRET_ACCESS_KEY) and that they allow this call")

FAILED_NODEGROUP_STATES = frozenset({"CREATE_FAILED", "DELETE_FAILED", "DELETING"})
# what a scaling activity (or an EKS node group's health issue) says of a launch EC2 refused for want of
# capacity (a GPU stockout) or of quota: the group keeps trying, and no wait of placer's outlasts either
STOCKOUT_WORDS = ("InsufficientInstanceCapacity", "InsufficientCapacity", "UnfulfillableCapacity",
                  "do not have sufficient", "no Spot capacity available")
QUOTA_WORDS = ("VcpuLimitExceeded", "InstanceLimitExceeded", "MaxSpotInstanceCountExceeded", "vCPU limit")


# ---------------------------------------------------------------- errors


def client_error_parts(exc: ClientError) -> tuple[str, str, int | None]:
    error = exc.response.get("Error", {}) or {}
    status = (exc.response.get("ResponseMetadata", {}) or {}).get("HTTPStatusCode")
    return str(error.get("Code", "")), str(error.get("Message", "")), status


def classify(exc: Exception, what: str, endpoint: str | None = None) -> ProviderError | None:
    """Turn a botocore exception into a ProviderError that says what failed and whether a retry may help."""
    where = f" at {endpoint}" if endpoint else ""
    if isinstance(exc, ClientError):
        code, message, status = client_error_parts(exc)
        detail = f"{code}: {message}" if message else code
        wait = retry_after((exc.response.get("ResponseMetadata") or {}).get("HTTPHeaders"))
        if code in THROTTLING_CODES or status == 429:
            # said of discovery and refresh too: "if an apply keeps being throttled" read as of another command
            return ProviderError(f"AWS throttled the request to {what} ({detail}): the account's API request rate is "
                                 "spent, shared with every tool calling AWS there (an apply's Settings "
                                 "apply.parallelism adds to it)", retryable=True, retry_after=wait,
                                 retry_advice="retry later")
        if code in TRANSIENT_CODES or retryable_http(status):
            return ProviderError(f"AWS could not {what} for now (HTTP {status}, {detail})",
                                 retryable=True, retry_after=wait, retry_advice="retry")
        if code in AUTH_CODES or status in (401, 403):
            return ProviderError(f"AWS refused to {what} ({detail}): {CREDENTIALS_HINT}", retryable=False)
        return ProviderError(f"AWS rejected the request to {what} (HTTP {status}, {detail})", retryable=False)
    if isinstance(exc, ReadTimeoutError | ConnectTimeoutError):
        return ProviderError(f"timed out talking to AWS{where} to {what}; if it keeps happening, check the network "
                             "or AWS_ENDPOINT_URL", retryable=True, retry_advice="retry")
    if isinstance(exc, HTTPClientError | EndpointConnectionError):  # also ConnectionClosedError, proxies
        return ProviderError(f"could not reach AWS{where} to {what} ({exc}); check network, proxy or "
                             "AWS_ENDPOINT_URL", retryable=True, retry_advice="then retry")
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return ProviderError(f"no usable AWS credentials to {what}: set AWS_PROFILE, or AWS_ACCESS_KEY_ID "
                             "and AWS_SECRET_ACCESS_KEY", retryable=False)
    if isinstance(exc, NoRegionError):
        return ProviderError(f"no AWS region to {what}: set target.aws.region or AWS_REGION", retryable=False)
    if isinstance(exc, ResponseParserError):
        return ProviderError(f"AWS{where} sent an unreadable answer to the request to {what} "
                             "(the endpoint is probably failing)", retryable=True, retry_advice="retry")
    if isinstance(exc, BotoCoreError):
        return ProviderError(f"AWS SDK error while trying to {what}: {exc}", retryable=False)
    return None


# ---------------------------------------------------------------- targets


@dataclass(frozen=True)
class GroupRef:
    """The AWS object a pool change acts on: an Auto Scaling group or an EKS managed node group."""

    region: str
    asg: str | None = None
    cluster: str | None = None
    nodegroup: str | None = None

    def __str__(self) -> str:
        if self.asg is not None:
            return f"Auto Scaling group '{self.asg}' in {self.region}"
        return f"EKS node group '{self.nodegroup}' of cluster '{self.cluster}' in {self.region}"


@dataclass(frozen=True)
class GroupState:
    desired: int
    min_size: int
    max_size: int
    in_service: int | None = None  # ASG: healthy InService instances
    status: str | None = None  # EKS: node group status
    issues: tuple[str, ...] = ()
    asg_names: tuple[str, ...] = ()  # EKS: the Auto Scaling groups behind the node group


def group_ref(change: Change) -> GroupRef:
    """Read ``target.aws`` of a pool change; a malformed target is a plan problem, not worth a retry."""
    aws = change.target.get("aws")
    fix = "the plan's target comes from the Pool's spec.target.aws: fix the Pool and re-plan"
    if not isinstance(aws, dict) or not aws.get("region"):
        raise ProviderError(f"{change.address}: target.aws.region is missing; {fix}", address=change.address)
    region = str(aws["region"])
    eks = aws.get("eks")
    if aws.get("autoScalingGroupName") and not eks:
        return GroupRef(region, asg=str(aws["autoScalingGroupName"]))
    if isinstance(eks, dict) and eks.get("cluster") and eks.get("nodegroup") and not aws.get("autoScalingGroupName"):
        return GroupRef(region, cluster=str(eks["cluster"]), nodegroup=str(eks["nodegroup"]))
    raise ProviderError(f"{change.address}: target.aws needs exactly one of autoScalingGroupName or "
                        f"eks {{cluster, nodegroup}}; {fix}", address=change.address)


def _in_service(group: dict[str, Any]) -> int:
    return sum(1 for i in group.get("Instances", [])
               if i.get("LifecycleState") == "InService" and i.get("HealthStatus", "Healthy") == "Healthy")


# ---------------------------------------------------------------- the provider


class AwsProvider:
    """Pools backed by Auto Scaling groups or EKS managed node groups."""

    name = "aws"

    def __init__(
        self,
        region_names: list[str] | None = None,
        endpoint_url: str | None = None,
        session: boto3.Session | None = None,
        *,
        max_attempts: int = 3,
        connect_timeout_s: float = 5.0,
        read_timeout_s: float = 20.0,
        poll_interval_s: float = 5.0,
    ) -> None:
        self.stop = threading.Event()  # set by an interrupted apply: health waits end at once (base.pause)
        self.region_names = list(region_names or [])
        self._explicit_endpoint = endpoint_url
        self.endpoint_url = endpoint_url or os.environ.get("AWS_ENDPOINT_URL")  # boto3 honours it itself too
        # made at the first call (``_aws_session``): a profile AWS_PROFILE names that does not exist is
        # said then, of an AWS pool; it was an internal error of every live apply and refresh
        self._session = session
        self._config = Config(retries={"total_max_attempts": max_attempts, "mode": "standard"},
                              connect_timeout=connect_timeout_s, read_timeout=read_timeout_s,
                              user_agent_extra="placer")
        self._poll_interval_s = poll_interval_s
        self._asked: dict[str, float] = {}  # pool address -> when its new size was asked for (time.time())
        self._clients: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()  # a boto3 Session is not thread-safe; the clients it makes are

    # ------------------------------------------------------------ plumbing

    def _aws_session(self) -> boto3.Session:
        if self._session is None:
            try:
                self._session = boto3.Session()
            except ProfileNotFound as exc:
                profile = exc.kwargs.get("profile")
                raise ProviderError(f"no AWS profile named {profile!r} (AWS_PROFILE or AWS_DEFAULT_PROFILE names it) "
                                    "in the AWS config files: add it (`aws configure --profile "
                                    f"{shlex.quote(str(profile))}`) or unset AWS_PROFILE", retryable=False) from exc
        return self._session

    def _client(self, service: str, region: str) -> Any:
        key = (service, region)
        with self._lock:
            if key not in self._clients:
                session = self._aws_session()
                try:
                    self._clients[key] = session.client(
                        service, region_name=region, endpoint_url=self._explicit_endpoint, config=self._config)
                except InvalidRegionError as exc:  # a ValueError too: it was said of the endpoint
                    raise ProviderError(f"{region!r} is not an AWS region name (such as eu-west-1): fix --region, "
                                        "AWS_REGION or the pool's target.aws.region", retryable=False) from exc
                except ValueError as exc:  # botocore's "Invalid endpoint: ..."
                    raise ProviderError(f"AWS endpoint {self.endpoint_url!r} is not a URL ({exc}): give one such as "
                                        "https://autoscaling.eu-west-1.amazonaws.com in AWS_ENDPOINT_URL (or "
                                        "--endpoint-url), or unset it", retryable=False) from exc
            return self._clients[key]

    def _call(self, address: str, what: str, call: Callable[[], T], *, prefix: bool = True) -> T:
        """Run an SDK call; its failure becomes a ProviderError whose message starts with the address."""

        def mapped(exc: Exception) -> ProviderError | None:
            error = classify(exc, what, self.endpoint_url)
            if error is not None and prefix:
                error = error.at(address)
            return error

        return guard(address, call, mapped)

    # ------------------------------------------------------------ Provider protocol

    def handles(self, change: Change) -> bool:
        return change.kind == "pool" and change.provider == self.name

    def observe(self, change: Change) -> dict[str, Any] | None:
        state = self._describe(change.address, group_ref(change))
        return None if state is None else {"nodes": state.desired}

    def apply(self, change: Change) -> None:
        if change.action == "delete":
            return  # released (its Pool left the fleet, or names another group): left as it is, no call made
        ref = group_ref(change)
        nodes = bounded_nodes(change, f"set {ref}")
        state = self._describe(change.address, ref)
        if state is None:
            raise self._not_found(change, ref)
        if not state.min_size <= nodes <= state.max_size:
            raise ProviderError(
                f"{change.address}: refusing to set {ref} to {nodes} nodes: the group allows "
                f"{state.min_size}..{state.max_size} (MinSize..MaxSize; desired stays {state.desired}). "
                "Change the group's limits where it is defined (Terraform, eksctl) or bring the Pool's "
                "nodes.min/nodes.max within them, then re-plan", address=change.address)
        if state.desired == nodes:
            return  # idempotent: nothing to do
        self._asked[change.address] = time.time()
        if ref.asg is not None:
            asg_name = ref.asg
            self._call(change.address, f"set the desired capacity of {ref} to {nodes}",
                       lambda: self._client("autoscaling", ref.region).set_desired_capacity(
                           AutoScalingGroupName=asg_name, DesiredCapacity=nodes, HonorCooldown=False))
        else:
            self._call(change.address, f"set the desired size of {ref} to {nodes}",
                       lambda: self._client("eks", ref.region).update_nodegroup_config(
                           clusterName=ref.cluster, nodegroupName=ref.nodegroup,
                           scalingConfig={"desiredSize": nodes}))

    def wait_healthy(self, change: Change, timeout_s: float) -> None:
        if change.after is None:
            return
        ref = group_ref(change)
        want = pool_nodes(change)
        deadline = time.monotonic() + timeout_s
        # a scaling activity counts from a minute before the size was asked for (AWS's clock against ours)
        since = self._asked.get(change.address, time.time()) - 60.0
        state: GroupState | None = None
        # a read a retry may pass (throttling, a 5xx) is waited past until the deadline, as a rollout's wait
        # does: it ended the wait, and the apply's retries of it, counted over the whole wait, were spent by
        # six throttled reads among minutes of good ones ("tried 6 times over 18s")
        failed: ProviderError | None = None
        while True:
            try:
                seen = self._poll(change, ref, want, since)
            except ProviderError as exc:
                if not exc.retryable:
                    raise
                failed = exc
            else:
                if seen is None:
                    return
                state, failed = seen, None
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ProviderError(self._timeout_message(change, ref, state, want, timeout_s, failed),
                                    retryable=True, address=change.address)
            wait = max(self._poll_interval_s, min((failed.retry_after if failed else None) or 0.0, 60.0))
            pause(self.stop, min(wait, remaining), change.address, f"{ref} to reach its size")

    def _poll(self, change: Change, ref: GroupRef, want: int, since: float) -> GroupState | None:
        """One read of the group ``wait_healthy`` waits for: None once its ``want`` instances are in service,
        else what it holds; a launch refused for capacity or quota, or a failed node group, raises."""
        state = self._describe(change.address, ref)
        if state is None:
            raise self._not_found(change, ref)
        if ref.asg is not None and state.in_service == want and state.desired == want:
            return None
        refused = self._refused_launch(ref, state, since)
        if refused is not None:
            raise self._capacity_error(change, ref, state, want, refused)
        if ref.asg is None:
            if state.status in FAILED_NODEGROUP_STATES:
                raise ProviderError(
                    f"{change.address}: {ref} is {state.status}{self._issues(state)}; fix the node group "
                    "(EKS console or its Terraform) and re-plan", address=change.address)
            if state.status == "ACTIVE" and state.desired == want:
                in_service = self._nodegroup_in_service(change.address, ref, state)
                if in_service is None or in_service == want:
                    return None
                state = replace(state, in_service=in_service)
        return state

    # ------------------------------------------------------------ reading groups

    def _describe(self, address: str, ref: GroupRef) -> GroupState | None:
        if ref.asg is not None:
            groups = self._asgs(address, ref, [ref.asg])
            if not groups:
                return None
            group = groups[0]
            return GroupState(desired=int(group["DesiredCapacity"]), min_size=int(group["MinSize"]),
                              max_size=int(group["MaxSize"]), in_service=_in_service(group))

        def read_nodegroup() -> dict[str, Any] | None:
            try:
                return dict(self._client("eks", ref.region).describe_nodegroup(
                    clusterName=ref.cluster, nodegroupName=ref.nodegroup)["nodegroup"])
            except ClientError as exc:
                if client_error_parts(exc)[0] == "ResourceNotFoundException":
                    return None
                raise

        ng = self._call(address, f"read {ref}", read_nodegroup)
        if ng is None:
            return None
        scaling = ng.get("scalingConfig", {}) or {}
        health = ng.get("health", {}) or {}
        issues = tuple(f"{i.get('code')}: {i.get('message')}" for i in health.get("issues", []))
        asg_names = tuple(a["name"] for a in (ng.get("resources", {}) or {}).get("autoScalingGroups", [])
                          if a.get("name"))
        return GroupState(desired=int(scaling.get("desiredSize", 0)), min_size=int(scaling.get("minSize", 0)),
                          max_size=int(scaling.get("maxSize", 0)), status=ng.get("status"), issues=issues,
                          asg_names=asg_names)

    def _asgs(self, address: str, ref: GroupRef, names: list[str]) -> list[dict[str, Any]]:
        response = self._call(address, f"read {ref}",
                              lambda: self._client("autoscaling", ref.region).describe_auto_scaling_groups(
                                  AutoScalingGroupNames=names))
        return [g for g in response.get("AutoScalingGroups", []) if g.get("AutoScalingGroupName") in names]

    def _nodegroup_in_service(self, address: str, ref: GroupRef, state: GroupState) -> int | None:
        """Healthy InService instances behind an EKS node group; None where its groups cannot be read."""
        if not state.asg_names:
            return None
        try:
            groups = self._asgs(address, ref, list(state.asg_names))
        except ProviderError as exc:
            if exc.retryable:
                raise
            return None  # e.g. no autoscaling:Describe* permission: the node group's ACTIVE is all we know
        return sum(_in_service(g) for g in groups) if groups else None

    def _not_found(self, change: Change, ref: GroupRef) -> ProviderError:
        return ProviderError(
            f"{change.address}: {ref} not found (looked in region {ref.region} of the account of the current "
            "AWS credentials). Check the Pool's target.aws (name, region), AWS_PROFILE and the account, "
            "then re-plan", retryable=False, address=change.address)

    @staticmethod
    def _issues(state: GroupState) -> str:
        return f" ({'; '.join(state.issues)})" if state.issues else ""

    def _timeout_message(self, change: Change, ref: GroupRef, state: GroupState | None, want: int, timeout_s: float,
                         failed: ProviderError | None = None) -> str:
        # where the last read failed (throttling, a 5xx), what it said; where every read did, that alone
        last = f"; its last read failed: {failed.facts.removeprefix(change.address + ': ')}" if failed else ""
        if state is None:
            return (f"{change.address}: timed out after {timeout_s:g}s waiting for {ref} to be healthy: every read of "
                    f"it failed{last}. The group keeps the desired size placer set, which the state records as not "
                    "come up yet: once AWS answers again, run `placer plan` and apply the new plan, which waits for "
                    "its instances again")
        if ref.asg is not None:
            seen = f"{state.in_service} of {want} instances InService (desired capacity {state.desired})"
            activity = self._latest_activity(ref)
            hint = f"; latest scaling activity: {activity}" if activity else ""
            check = "check the group's activity history (capacity, quotas, launch template)"
        else:
            instances = f", {state.in_service} of {want} instances InService" if state.in_service is not None else ""
            seen = f"status {state.status}, desired size {state.desired} of {want}{instances}{self._issues(state)}"
            hint, check = "", "check the node group's health in EKS"
        # the state records the size as not come up yet (``Applier._grows``): the next plan waits for it again
        return (f"{change.address}: timed out after {timeout_s:g}s waiting for {ref} to be healthy: {seen}"
                f"{hint}{last}; {check}. The group keeps its desired size {state.desired}, which the state records as "
                "not come up yet: run `placer plan` and apply the new plan, which waits for its instances again")

    def _refused_launch(self, ref: GroupRef, state: GroupState, since: float) -> str | None:
        """What the group says of a launch EC2 refused for want of capacity or quota, or None: its newest
        scaling activity since ``since`` (an ASG), or its health issues (an EKS node group)."""
        if ref.asg is None:
            said = "; ".join(state.issues)
            return f"health issue: {said}" if any(w in said for w in (*STOCKOUT_WORDS, *QUOTA_WORDS)) else None
        try:
            acts = self._client("autoscaling", ref.region).describe_scaling_activities(
                AutoScalingGroupName=ref.asg, MaxRecords=5).get("Activities", [])
        except (ClientError, BotoCoreError, ResponseParserError):
            return None  # the wait goes on; its timeout says what it can
        recent = [a for a in acts if not hasattr(a.get("StartTime"), "timestamp") or a["StartTime"].timestamp() >= since]
        if not recent or recent[0].get("StatusCode") not in ("Failed", "Cancelled"):
            return None
        act = recent[0]
        said = " ".join(str(act.get(k) or "") for k in ("StatusMessage", "Description"))
        if not any(w in said for w in (*STOCKOUT_WORDS, *QUOTA_WORDS)):
            return None
        return f"scaling activity {act.get('StatusCode')}: {act.get('StatusMessage') or act.get('Description')}"

    def _capacity_error(self, change: Change, ref: GroupRef, state: GroupState, want: int,
                        refused: str) -> ProviderError:
        """A grown group that cannot launch its instances: EC2 has none of its type to give where it may
        launch (a stockout) or the account's quota does not allow them. Not waited out: the wait took the
        whole health timeout, and the deployment's on it then, and said pods pending, nothing of capacity."""
        pool, gpus, has = grown_pool(change, "instances")
        keep = f"to the {has} it had" if has is not None else "to the nodes it runs"
        running = (f"{state.in_service} of {want} instances InService" if state.in_service is not None
                   else f"status {state.status}")
        kept = (f"it keeps its desired size {state.desired} and goes on trying (placer records that, and the next "
                "apply waits for its instances again); lowering nodes.max sets it back")
        if any(w in refused for w in QUOTA_WORDS):
            return ProviderError(
                f"{change.address}: {ref} cannot launch its {gpus}: the account's EC2 quota does not allow them "
                f"({refused}); {running}. Not waited out, as a quota does not rise by itself: {kept}. Request more "
                f"(Service Quotas console, EC2, in {ref.region}), or lower pool {pool}'s nodes.max {keep} so that "
                "the plan places elsewhere; then run `placer plan` and apply the new plan", address=change.address)
        return ProviderError(
            f"{change.address}: {ref} cannot launch its {gpus}: EC2 has no capacity for them where the group may "
            f"launch (a stockout: {refused}); {running}. Not waited out, as a stockout lasts minutes to hours: "
            f"{kept}. Either let the plan place elsewhere: lower pool {pool}'s nodes.max {keep} (or give the group "
            "more Availability Zones or instance types where it is defined); then run `placer plan` and apply the "
            "new plan. Or run `placer plan` again later, once capacity is back, and apply that plan",
            address=change.address)

    def _latest_activity(self, ref: GroupRef) -> str | None:
        try:
            acts = self._client("autoscaling", ref.region).describe_scaling_activities(
                AutoScalingGroupName=ref.asg, MaxRecords=1).get("Activities", [])
        except (ClientError, BotoCoreError, ResponseParserError):
            return None  # only decorates a message
        if not acts:
            return None
        act = acts[0]
        return f"{act.get('StatusCode')}: {act.get('StatusMessage') or act.get('Description', '')}".strip()

    # ------------------------------------------------------------ discovery

    def discover(self, region_names: list[str] | None = None, retry: Retrier | None = None) -> Discovered:
        """Pool documents for every GPU Auto Scaling group and EKS node group, and a Location per region
        (``providers.aws_discovery``); ``retry`` tries each call again after a retryable failure."""
        from providers.aws_discovery import discover

        home = None if region_names or self.region_names else self._aws_session().region_name
        regions = list(region_names or self.region_names or ([home] if home else []))
        if not regions:
            raise ProviderError("AWS discovery needs regions: pass --region (repeatable), or set AWS_REGION or "
                                "the profile's region (`aws configure set region eu-west-1`)")
        return discover(self, regions, retry)
