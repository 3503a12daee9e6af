package resources

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/scheduler"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	cfndynamodb "github.com/awslabs/goformation/v7/cloudformation/dynamodb"
	cfnscheduler "github.com/awslabs/goformation/v7/cloudformation/scheduler"
	cfnsqs "github.com/awslabs/goformation/v7/cloudformation/sqs"
)

// ErrMismatch is wrapped by the error Create returns when a resource of the
// same name already exists but differs from the template in a way that
// cannot be changed in place (a table's keys, a queue's FIFO-ness).
var ErrMismatch = errors.New("existing resource does not match the template")

// The environment variables through which weir's binaries learn the names,
// and the logical ids of the template resources they come from.
const (
	EnvJobsTable      = "WEIR_JOBS_TABLE"
	EnvLeaseTable     = "WEIR_LEASE_TABLE"
	EnvWorkerQueueURL = "WEIR_WORKER_QUEUE_URL"
	// EnvWorkerUrgentQueueURL is the queue for news the controller must act
	// on at once (docs/protocol.md); optional for the binaries.
	EnvWorkerUrgentQueueURL = "WEIR_WORKER_URGENT_QUEUE_URL"
	EnvWorkerDLQURL         = "WEIR_WORKER_DLQ_URL"
	EnvScheduleGroup        = "WEIR_SCHEDULE_GROUP"
	EnvScheduleDLQARN       = "WEIR_SCHEDULE_DLQ_ARN"
)

// envByLogicalID maps a data resource to the variable that carries its name
// (tables, schedule groups) or URL (queues); envARNByLogicalID to the one
// that carries its ARN.
var (
	envByLogicalID = map[string]string{
		"JobsTable":             EnvJobsTable,
		"LeaseTable":            EnvLeaseTable,
		"WorkerQueue":           EnvWorkerQueueURL,
		"WorkerUrgentQueue":     EnvWorkerUrgentQueueURL,
		"WorkerDeadLetterQueue": EnvWorkerDLQURL,
		"TtlScheduleGroup":      EnvScheduleGroup,
	}
	envARNByLogicalID = map[string]string{
		"ScheduleDeadLetterQueue": EnvScheduleDLQARN,
	}
)

// Clients are the SDK clients a stack is made with. Scheduler may be nil:
// schedule groups are then skipped, for callers that need only tables and
// queues.
type Clients struct {
	DynamoDB  *dynamodb.Client
	SQS       *sqs.Client
	Scheduler *scheduler.Client
}

// CloudFormation's rule for stack names; every physical name starts with it.
var stackNameRE = regexp.MustCompile(`^[a-zA-Z][-a-zA-Z0-9]{0,127}$`)

// Options are the inputs of one stack.
type Options struct {
	// StackName plays the part of AWS::StackName: "${AWS::StackName}-jobs"
	// becomes "<StackName>-jobs".
	StackName string
	// Parameters override the template's parameter defaults.
	Parameters map[string]string
}

// Resource is one data resource of a stack.
type Resource struct {
	LogicalID string
	Type      string // TypeTable, TypeQueue or TypeScheduleGroup
	Name      string // table, queue or schedule group name
	URL       string // queues only
	ARN       string
	StreamARN string // tables with a stream only
	// Created is true when this call created the resource, false when it
	// found it already there.
	Created bool
}

// Stack is the set of data resources made from one template under one
// stack name.
type Stack struct {
	Name string
	// Resources are in creation order.
	Resources []Resource
}

// Resource returns the resource with the given logical id.
func (s *Stack) Resource(logicalID string) (Resource, bool) {
	for _, r := range s.Resources {
		if r.LogicalID == logicalID {
			return r, true
		}
	}
	return Resource{}, false
}

// Env returns the environment weir's binaries read (WEIR_JOBS_TABLE,
// WEIR_WORKER_QUEUE_URL, WEIR_SCHEDULE_GROUP, …) for the resources the stack
// has.
func (s *Stack) Env() map[string]string {
	env := map[string]string{}
	for _, r := range s.Resources {
		if key, ok := envARNByLogicalID[r.LogicalID]; ok {
			env[key] = r.ARN
		}
		key, ok := envByLogicalID[r.LogicalID]
		if !ok {
			continue
		}
		if r.Type == TypeQueue {
			env[key] = r.URL
		} else {
			env[key] = r.Name
		}
	}
	return env
}

// Delete deletes the stack's tables and queues, newest first, and waits for
// the tables to be gone. Resources that no longer exist are skipped; it
// carries on past failures and reports them all.
func (s *Stack) Delete(ctx context.Context, ddb *dynamodb.Client, sq *sqs.Client) error {
	return deleteAll(ctx, Clients{DynamoDB: ddb, SQS: sq}, s.Resources)
}

// DeleteWith is Delete for stacks with schedule groups.
func (s *Stack) DeleteWith(ctx context.Context, c Clients) error {
	return deleteAll(ctx, c, s.Resources)
}

func deleteAll(ctx context.Context, c Clients, rs []Resource) error {
	var errs []error
	for i := len(rs) - 1; i >= 0; i-- {
		r := rs[i]
		var err error
		switch r.Type {
		case TypeTable:
			err = deleteTable(ctx, c.DynamoDB, r.Name)
		case TypeQueue:
			err = deleteQueue(ctx, c.SQS, r.URL)
		case TypeScheduleGroup:
			if c.Scheduler == nil {
				err = errors.New("a schedule group needs a Scheduler client to be deleted")
				break
			}
			err = deleteScheduleGroup(ctx, c.Scheduler, r.Name)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", r.LogicalID, err))
		}
	}
	return errors.Join(errs...)
}

// Create creates every table and queue of the template under opts.StackName,
// or reuses those that already exist after checking they match. Parameters
// and the whole template are checked before anything is created. If a
// resource fails, the ones this call created are deleted again, so a failed
// Create leaves things as they were.
func (t *Template) Create(ctx context.Context, ddb *dynamodb.Client, sq *sqs.Client, opts Options) (*Stack, error) {
	return t.CreateWith(ctx, Clients{DynamoDB: ddb, SQS: sq}, opts)
}

// CreateWith is Create with every client; with c.Scheduler set it creates
// the schedule groups too.
func (t *Template) CreateWith(ctx context.Context, c Clients, opts Options) (*Stack, error) {
	region := c.DynamoDB.Options().Region
	// A dry run with made-up names and ARNs catches bad parameters,
	// unresolvable references and malformed properties up front.
	if _, err := t.walk(opts, region, placeholder(region)); err != nil {
		return nil, err
	}
	created, err := t.walk(opts, region, func(id string, spec any) (Resource, error) {
		switch s := spec.(type) {
		case *tableSpec:
			return ensureTable(ctx, c.DynamoDB, id, s)
		case *queueSpec:
			return ensureQueue(ctx, c.SQS, id, s)
		case *scheduleGroupSpec:
			if c.Scheduler == nil {
				return Resource{}, errSkipped
			}
			return ensureScheduleGroup(ctx, c.Scheduler, id, s)
		}
		return Resource{}, fmt.Errorf("unexpected spec %T", spec)
	})
	if err != nil {
		var ours []Resource
		for _, r := range created {
			if r.Created {
				ours = append(ours, r)
			}
		}
		// The caller's context may be what failed; roll back regardless.
		if rbErr := deleteAll(context.WithoutCancel(ctx), c, ours); rbErr != nil {
			err = errors.Join(err, fmt.Errorf("roll back: %w", rbErr))
		}
		return nil, err
	}
	return &Stack{Name: opts.StackName, Resources: created}, nil
}

// Lookup finds the stack's data resources that exist, without creating
// anything: what Delete needs when the Stack from Create is gone. Schedule
// groups are looked up only when c.Scheduler is set.
func (t *Template) Lookup(ctx context.Context, c Clients, opts Options) (*Stack, error) {
	ddb, sq := c.DynamoDB, c.SQS
	region := ddb.Options().Region
	fake := placeholder(region)
	missing := map[string]bool{}
	found, err := t.walk(opts, region, func(id string, spec any) (Resource, error) {
		switch s := spec.(type) {
		case *tableSpec:
			desc, err := describeTable(ctx, ddb, s.name)
			if err != nil || desc == nil {
				missing[id] = true
				r, _ := fake(id, spec)
				return r, err
			}
			return Resource{LogicalID: id, Type: TypeTable, Name: s.name, ARN: aws.ToString(desc.TableArn), StreamARN: aws.ToString(desc.LatestStreamArn)}, nil
		case *queueSpec:
			url, err := queueURL(ctx, sq, s.name)
			if err != nil || url == "" {
				missing[id] = true
				// Later resources may refer to this one; give them a stand-in.
				r, _ := fake(id, spec)
				return r, err
			}
			arn, err := queueARN(ctx, sq, url)
			if err != nil {
				return Resource{}, err
			}
			return Resource{LogicalID: id, Type: TypeQueue, Name: s.name, URL: url, ARN: arn}, nil
		case *scheduleGroupSpec:
			if c.Scheduler == nil {
				return Resource{}, errSkipped
			}
			arn, err := scheduleGroupARN(ctx, c.Scheduler, s.name)
			if err != nil || arn == "" {
				missing[id] = true
				r, _ := fake(id, spec)
				return r, err
			}
			return Resource{LogicalID: id, Type: TypeScheduleGroup, Name: s.name, ARN: arn}, nil
		}
		return Resource{}, fmt.Errorf("unexpected spec %T", spec)
	})
	if err != nil {
		return nil, err
	}
	st := &Stack{Name: opts.StackName}
	for _, r := range found {
		if !missing[r.LogicalID] {
			st.Resources = append(st.Resources, r)
		}
	}
	return st, nil
}

// placeholder stands in for AWS in the dry run: it makes up the URL and
// ARNs a resource would have, in the account 000000000000.
func placeholder(region string) func(id string, spec any) (Resource, error) {
	return func(id string, spec any) (Resource, error) {
		const account = "000000000000"
		switch s := spec.(type) {
		case *tableSpec:
			r := Resource{LogicalID: id, Type: TypeTable, Name: s.name,
				ARN: fmt.Sprintf("arn:aws:dynamodb:%s:%s:table/%s", region, account, s.name)}
			if s.props.StreamSpecification != nil {
				r.StreamARN = r.ARN + "/stream/1970-01-01T00:00:00.000"
			}
			return r, nil
		case *queueSpec:
			return Resource{LogicalID: id, Type: TypeQueue, Name: s.name,
				URL: fmt.Sprintf("https://sqs.%s.amazonaws.com/%s/%s", region, account, s.name),
				ARN: fmt.Sprintf("arn:aws:sqs:%s:%s:%s", region, account, s.name)}, nil
		case *scheduleGroupSpec:
			return Resource{LogicalID: id, Type: TypeScheduleGroup, Name: s.name,
				ARN: fmt.Sprintf("arn:aws:scheduler:%s:%s:schedule-group/%s", region, account, s.name)}, nil
		}
		return Resource{}, fmt.Errorf("unexpected spec %T", spec)
	}
}

// errSkipped is what visit returns for a resource it leaves out (a schedule
// group without a Scheduler client).
var errSkipped = errors.New("skipped")

// walk resolves the data resources in creation order and hands each to
// visit, whose result later resources can refer to. It returns the visited
// resources, including the one that failed if visit reported it Created.
func (t *Template) walk(opts Options, region string, visit func(id string, spec any) (Resource, error)) ([]Resource, error) {
	if !stackNameRE.MatchString(opts.StackName) {
		return nil, fmt.Errorf("stack name %q is not valid: it must start with a letter and have at most 128 letters, digits and '-'", opts.StackName)
	}
	if region == "" {
		return nil, errors.New("the SDK config has no region: set AWS_REGION")
	}
	params, err := t.parameterValues(opts.Parameters)
	if err != nil {
		return nil, err
	}
	sc := newScope(t, opts.StackName, params)
	var out []Resource
	for _, id := range t.order {
		raw := t.resources[id]
		spec, err := t.spec(sc, id, raw)
		if err != nil {
			return out, fmt.Errorf("%s (%s): %w", id, raw.Type, err)
		}
		r, err := visit(id, spec)
		if errors.Is(err, errSkipped) {
			continue
		}
		if err != nil {
			if r.Created {
				out = append(out, r)
			}
			return out, fmt.Errorf("%s (%s): %w", id, raw.Type, err)
		}
		out = append(out, r)
		sc.done[id] = r
	}
	return out, nil
}

// spec resolves a resource's properties and decodes them into goformation's
// typed resource, which rejects unknown or mistyped properties.
func (t *Template) spec(sc *scope, id string, raw rawResource) (any, error) {
	props, err := sc.resolve(raw.Properties, "Properties")
	if err != nil {
		return nil, err
	}
	doc, err := json.Marshal(map[string]any{"Type": raw.Type, "Properties": props})
	if err != nil {
		return nil, err
	}
	switch raw.Type {
	case TypeTable:
		var table cfndynamodb.Table
		if err := json.Unmarshal(doc, &table); err != nil {
			return nil, fmt.Errorf("properties: %w", err)
		}
		return newTableSpec(sc.stackName, id, &table)
	case TypeQueue:
		var queue cfnsqs.Queue
		if err := json.Unmarshal(doc, &queue); err != nil {
			return nil, fmt.Errorf("properties: %w", err)
		}
		return newQueueSpec(sc.stackName, id, &queue)
	case TypeScheduleGroup:
		var group cfnscheduler.ScheduleGroup
		if err := json.Unmarshal(doc, &group); err != nil {
			return nil, fmt.Errorf("properties: %w", err)
		}
		return newScheduleGroupSpec(sc.stackName, id, &group)
	}
	return nil, fmt.Errorf("type %s is not created here", raw.Type)
}
