"""Logical ids of the template's parameters, conditions, resources and outputs.

Layer: leaf, constants only. Renaming a resource's logical id makes CloudFormation replace it (a new
bucket, a new table), so these are fixed names, referenced by objects everywhere except where a string is
required: user data names the Auto Scaling group it signals, which cannot be a ``Ref`` (the group refers to
the launch template that carries the user data).
"""

from __future__ import annotations

# --- Parameters -------------------------------------------------------------------------------------
DOMAIN_NAME = "DomainName"
HOSTED_ZONE_ID = "HostedZoneId"
CERTIFICATE_ARN = "CertificateArn"
SENDER_EMAIL = "SenderEmail"
MAIL_DOMAIN = "MailDomain"
ALARM_EMAIL = "AlarmEmail"
RELEASE_BUCKET = "ReleaseBucket"
RELEASE_KEY = "ReleaseKey"
IMAGE_ID = "ImageId"
PINNED_IMAGE_ID = "PinnedImageId"
RELEASE_SHA256 = "ReleaseSha256"
INSTANCE_TYPE = "InstanceType"
MIN_SIZE = "MinSize"
MAX_SIZE = "MaxSize"
TARGET_REQUESTS_PER_INSTANCE = "TargetRequestsPerInstance"
TARGET_CPU_PERCENT = "TargetCpuPercent"
ENABLE_NAT = "EnableNat"
VPC_CIDR = "VpcCidr"
LOG_RETENTION_DAYS = "LogRetentionDays"
ALARM_5XX_PERCENT = "Alarm5xxPercent"
ALARM_P99_SECONDS = "AlarmP99Seconds"
EXISTING_TABLE_NAME = "ExistingTableName"
EXISTING_BUCKET_NAME = "ExistingBucketName"
CORS_ORIGINS = "CorsOrigins"
LOGIN_RATE_LIMIT = "LoginRateLimit"

# --- Conditions -------------------------------------------------------------------------------------
NAT_ENABLED = "NatEnabled"
NAT_DISABLED = "NatDisabled"
ADOPT_TABLE = "AdoptTable"
ADOPT_BUCKET = "AdoptBucket"
#: Regions opened before August 2022: the load balancer writes its access logs from a regional account.
ELB_LOG_ACCOUNT_REGION = "ElbLogAccountRegion"
WAF_ENABLED = "WafEnabled"
#: ``PinnedImageId`` given: instances boot that AMI, whatever the SSM parameter ``ImageId`` names now.
IMAGE_PINNED = "ImagePinned"
#: ``MailDomain`` given: a domain identity with DKIM and a custom MAIL FROM, instead of the address alone.
MAIL_DOMAIN_GIVEN = "MailDomainGiven"
NO_MAIL_DOMAIN = "NoMailDomain"

# --- Mappings ---------------------------------------------------------------------------------------
ELB_LOG_ACCOUNTS = "ElbLogAccounts"

# --- Network ----------------------------------------------------------------------------------------
VPC = "Vpc"
VPC_IPV6_CIDR = "VpcIpv6Cidr"
INTERNET_GATEWAY = "InternetGateway"
GATEWAY_ATTACHMENT = "InternetGatewayAttachment"
PUBLIC_ROUTE_TABLE = "PublicRouteTable"
PUBLIC_ROUTE_IPV4 = "PublicRouteIpv4"
PUBLIC_ROUTE_IPV6 = "PublicRouteIpv6"
#: Per availability zone (0, 1): formatted with the zone's index.
PUBLIC_SUBNET = "PublicSubnet{}"
PUBLIC_SUBNET_ROUTES = "PublicSubnet{}Routes"
PRIVATE_SUBNET = "PrivateSubnet{}"
PRIVATE_ROUTE_TABLE = "PrivateRouteTable{}"
PRIVATE_SUBNET_ROUTES = "PrivateSubnet{}Routes"
NAT_ADDRESS = "NatAddress{}"
NAT_GATEWAY = "NatGateway{}"
PRIVATE_ROUTE_NAT = "PrivateRoute{}Nat"
S3_ENDPOINT = "S3Endpoint"
DYNAMODB_ENDPOINT = "DynamoDbEndpoint"
ENDPOINT_SECURITY_GROUP = "EndpointSecurityGroup"
#: Depends on whichever way out the private subnets have (NAT routes or interface endpoints).
NETWORK_READY = "NetworkReady"
#: Interface endpoints when there is no NAT: formatted with the service's name, e.g. ``StsEndpoint``.
INTERFACE_ENDPOINT = "{}Endpoint"

# --- Front ------------------------------------------------------------------------------------------
LOAD_BALANCER_SECURITY_GROUP = "LoadBalancerSecurityGroup"
LOAD_BALANCER = "LoadBalancer"
TARGET_GROUP = "ApiTargetGroup"
FEED_TARGET_GROUP = "FeedTargetGroup"
HTTPS_LISTENER = "HttpsListener"
HTTP_LISTENER = "HttpListener"
FEED_LISTENER_RULE = "FeedLongPollRule"
WEB_ACL = "WebAcl"
WEB_ACL_ASSOCIATION = "WebAclAssociation"
INTERNAL_PATHS_RULE = "InternalPathsRule"
DNS_RECORD_A = "DnsRecordA"
DNS_RECORD_AAAA = "DnsRecordAaaa"

# --- Compute ----------------------------------------------------------------------------------------
INSTANCE_SECURITY_GROUP = "InstanceSecurityGroup"
LAUNCH_TEMPLATE = "LaunchTemplate"
AUTO_SCALING_GROUP = "AutoScalingGroup"
REQUEST_SCALING_POLICY = "RequestCountScalingPolicy"
CPU_SCALING_POLICY = "CpuScalingPolicy"

# --- Data -------------------------------------------------------------------------------------------
BUCKET = "BlobBucket"
BUCKET_POLICY = "BlobBucketPolicy"
TABLE = "Table"
TOKEN_SECRET = "TokenSecret"  # noqa: S105 (a logical id, not a secret)

# --- Identity ---------------------------------------------------------------------------------------
INSTANCE_ROLE = "InstanceRole"
INSTANCE_ROLE_POLICY = "InstanceRolePolicy"
INSTANCE_PROFILE = "InstanceProfile"
UPLOAD_ROLE = "UploadRole"
UPLOAD_ROLE_BOUNDARY = "UploadRoleBoundary"
SENDER_IDENTITY = "SenderIdentity"

# --- Mail -------------------------------------------------------------------------------------------
MAIL_DOMAIN_IDENTITY = "MailDomainIdentity"
#: Easy DKIM's three CNAME records (1, 2, 3).
MAIL_DKIM_RECORD = "MailDkimRecord{}"
MAIL_FROM_MX_RECORD = "MailFromMxRecord"
MAIL_FROM_SPF_RECORD = "MailFromSpfRecord"
MAIL_CONFIGURATION_SET = "MailConfigurationSet"
MAIL_FEEDBACK_DESTINATION = "MailFeedbackDestination"
MAIL_FEEDBACK_TOPIC = "MailFeedbackTopic"
MAIL_FEEDBACK_TOPIC_POLICY = "MailFeedbackTopicPolicy"
MAIL_FEEDBACK_QUEUE = "MailFeedbackQueue"
MAIL_FEEDBACK_QUEUE_POLICY = "MailFeedbackQueuePolicy"
MAIL_FEEDBACK_SUBSCRIPTION = "MailFeedbackSubscription"

# --- Operations -------------------------------------------------------------------------------------
LOG_GROUP = "LogGroup"
ACCESS_LOG_BUCKET = "AccessLogBucket"
ACCESS_LOG_BUCKET_POLICY = "AccessLogBucketPolicy"
ALARM_TOPIC = "AlarmTopic"
ALARM_TOPIC_POLICY = "AlarmTopicPolicy"
ALARM_SUBSCRIPTION = "AlarmEmailSubscription"
LAUNCH_UNSUCCESSFUL_RULE = "LaunchUnsuccessfulRule"
NOTIFIER_FAILURES_FILTER = "NotifierFailuresFilter"
DASHBOARD = "Dashboard"
#: Alarms; each has a runbook entry in docs/operations.md headed by its logical id.
ALARM_5XX = "Http5xxRateAlarm"
ALARM_P99 = "ResponseTimeP99Alarm"
ALARM_UNHEALTHY = "UnhealthyHostsAlarm"
ALARM_HEALTHY = "HealthyHostsAlarm"
ALARM_LAUNCHES = "LaunchFailuresAlarm"
ALARM_THROTTLES = "DynamoDbThrottlesAlarm"
ALARM_NOTIFIER_DOWN = "NotifierDownAlarm"
ALARM_NOTIFIER_FAILING = "NotifierFailingAlarm"
ALARM_SES_BOUNCES = "SesBounceRateAlarm"
ALARM_SES_COMPLAINTS = "SesComplaintRateAlarm"
ALARM_MAIL_FEEDBACK_BACKLOG = "MailFeedbackBacklogAlarm"
ALARM_MEMORY = "MemoryAlarm"
ALARM_DISK = "DiskAlarm"

# --- Outputs ----------------------------------------------------------------------------------------
OUT_SERVICE_URL = "ServiceUrl"
OUT_LOAD_BALANCER_DNS = "LoadBalancerDnsName"
OUT_BUCKET = "BucketName"
OUT_TABLE = "TableName"
OUT_INSTANCE_ROLE = "InstanceRoleArn"
OUT_UPLOAD_ROLE = "UploadRoleArn"
OUT_TOKEN_SECRET = "TokenSecretArn"  # noqa: S105 (an output name, not a secret)
OUT_LOG_GROUP = "LogGroupName"
OUT_ALARM_TOPIC = "AlarmTopicArn"
OUT_AUTO_SCALING_GROUP = "AutoScalingGroupName"
OUT_VPC = "VpcId"
OUT_ACCESS_LOG_BUCKET = "AccessLogBucketName"
OUT_DASHBOARD = "DashboardName"
OUT_MAIL_CONFIGURATION_SET = "MailConfigurationSetName"
OUT_MAIL_FEEDBACK_QUEUE = "MailFeedbackQueueUrl"
