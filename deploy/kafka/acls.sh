#!/usr/bin/env bash
# The Kafka ACLs of docker-compose.yml: each principal (a client certificate's CN, see
# deploy/tls/make-certs.sh) gets only what it needs; the broker refuses everything else
# (allow.everyone.if.no.acl.found=false). Run by the one-shot `kafka-acls` service as
# CN=sakk-admin; adding an ACL that exists changes nothing, so it is safe to repeat.
#
# Banks: write payments.initiated (their payments and the steps they ask of them); read
# nothing. No one writes schemas on Kafka: the writer schemas the switch decodes with are
# approved in the ledger (`sakk schemas approve`), which no bank can reach.
# There are no per-bank topics yet, so nothing on Kafka is addressed to one bank alone:
# banks are told of outcomes by signed webhooks, and get no read right and no group.
set -euo pipefail

KAFKA_ACLS="${KAFKA_ACLS:-/opt/kafka/bin/kafka-acls.sh}"
BOOTSTRAP="${KAFKA_BOOTSTRAP:-kafka:9092}"
ADMIN_CONFIG="${ADMIN_CONFIG:-/etc/kafka/admin/admin.properties}"
TOPICS="${TOPIC_PREFIX:-payments}"        # SAKK_TOPIC_PREFIX
CONSUMER_GROUPS="${GROUP_PREFIX:-sakk}"   # SAKK_CONSUMER_GROUP_PREFIX
BANKS="${BANKS:-007 011 190 013 022 021 230 225 310}"

# grant CN OPERATION topic|group|cluster [NAME [literal|prefixed]]
grant() {
  local cn=$1 operation=$2 resource=$3 name=${4:-} pattern=${5:-literal}
  local target=()
  case $resource in
    topic) target=(--topic "$name" --resource-pattern-type "$pattern") ;;
    group) target=(--group "$name" --resource-pattern-type "$pattern") ;;
    cluster) target=(--cluster) ;;
    *) echo "acls.sh: unknown resource $resource" >&2; exit 2 ;;
  esac
  "$KAFKA_ACLS" --bootstrap-server "$BOOTSTRAP" --command-config "$ADMIN_CONFIG" --add \
    --allow-principal "User:CN=$cn" --operation "$operation" "${target[@]}" >/dev/null
  echo "allow User:CN=$cn $operation $resource ${name:-kafka-cluster} ($pattern)"
}

# A producer with enable_idempotence=True asks for a producer id.
producer() { grant "$1" IdempotentWrite cluster; }

# stage CN CONSUMER "INPUTS" "OUTPUTS": read the inputs in its own group, write the outputs
# and the dead-letter topic.
stage() {
  local cn=$1 consumer=$2 topic
  for topic in $3; do grant "$cn" Read topic "$TOPICS.$topic"; done
  grant "$cn" Read group "$CONSUMER_GROUPS.$consumer"
  for topic in $4 dlq; do grant "$cn" Write topic "$TOPICS.$topic"; done
  producer "$cn"
}

# bank CN: publish payments, nothing else.
bank() {
  grant "$1" Write topic "$TOPICS.initiated"
  producer "$1"
}

# init (`sakk topics create`): create and describe the payment topics, nothing else.
grant sakk-init Create topic "$TOPICS." prefixed
grant sakk-init Describe topic "$TOPICS." prefixed

# Steps of payments travel with them: banks' on payments.initiated, the validated ones
# (and the expiries settlement's scheduler publishes) on payments.validated. Settlement
# also reads the banks' liquidity movements, which operators publish as CN=sakk-admin
# (`sakk liquidity fund|withdraw`).
stage sakk-validator validator "initiated" "validated rejected steps-refused"
stage sakk-settlement settlement "validated liquidity.movements" "settled failed steps steps-refused validated"
stage sakk-notification notification "settled rejected failed steps steps-refused" "notified"

# Auditors' tools (replay, trace): read every payment topic, without a group. The tools
# that write (dlq redrive, settlement close) run as CN=sakk-admin.
grant sakk-auditor Read topic "$TOPICS." prefixed

# The traffic simulator publishes as a bank does.
bank sakk-simulator
for code in $BANKS; do
  bank "bank-$code"
done
