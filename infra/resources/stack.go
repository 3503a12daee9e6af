package resources

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	cfndynamodb "github.com/awslabs/goformation/v7/cloudformation/dynamodb"
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
	EnvWorkerDLQURL   = "WEIR_WORKER_DLQ_URL"
)

var envByLogicalID = map[string]string{
	"JobsTable":             EnvJobsTable,
	"LeaseTable":            EnvLeaseTable,
	"WorkerQueue":           EnvWorkerQueueURL,
	"WorkerDeadLetterQueue": EnvWorkerDLQURL,
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
	// AccountID is needed only by templates whose tables or queues use
	// AWS::AccountId or AWS::StackId.
	AccountID string
}

// Resource is one table or queue of a stack.
type Resource struct {
	LogicalID string
	Type      string // TypeTable or TypeQueue
	Name      string // table or queue name
	URL       string // queues only
	ARN       string
	StreamARN string // tables with a stream only
	// Created is true when this call created the resource, false when it
	// found it already there.
	Created bool
}

// Stack is the set of tables and queues made from one template under one
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

// Env returns the environment weir's binaries read: WEIR_JOBS_TABLE,
// WEIR_LEASE_TABLE, WEIR_WORKER_QUEUE_URL and WEIR_WORKER_DLQ_URL, for those
// of the JobsTable, LeaseTable, WorkerQueue and WorkerDeadLetterQueue
// resources the stack has.
func (s *Stack) Env() map[string]string {
	env := map[string]string{}
	for _, r := range s.Resources {
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
	return deleteAll(ctx, ddb, sq, s.Resources)
}

func deleteAll(ctx context.Context, ddb *dynamodb.Client, sq *sqs.Client, rs []Resource) error {
	var errs []error
	for i := len(rs) - 1; i >= 0; i-- {
		r := rs[i]
		var err error
		switch r.Type {
		case TypeTable:
			err = deleteTable(ctx, ddb, r.Name)
		case TypeQueue:
			err = deleteQueue(ctx, sq, r.URL)
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
	region := ddb.Options().Region
	// A dry run with made-up names and ARNs catches bad parameters,
	// unresolvable references and malformed properties up front.
	if _, err := t.walk(opts, region, placeholder(region)); err != nil {
		return nil, err
	}
	created, err := t.walk(opts, region, func(id string, spec any) (Resource, error) {
		switch s := spec.(type) {
		case *tableSpec:
			return ensureTable(ctx, ddb, id, s)
		case *queueSpec:
			return ensureQueue(ctx, sq, id, s)
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
		if rbErr := deleteAll(context.WithoutCancel(ctx), ddb, sq, ours); rbErr != nil {
			err = errors.Join(err, fmt.Errorf("roll back: %w", rbErr))
		}
		return nil, err
	}
	return &Stack{Name: opts.StackName, Resources: created}, nil
}

// Lookup finds the stack's tables and queues that exist, without creating
// anything: what Delete needs when the Stack from Create is gone.
func (t *Template) Lookup(ctx context.Context, ddb *dynamodb.Client, sq *sqs.Client, opts Options) (*Stack, error) {
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
		}
		return Resource{}, fmt.Errorf("unexpected spec %T", spec)
	}
}

// walk resolves the tables and queues in creation order and hands each to
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
	sc := newScope(t, opts.StackName, region, opts.AccountID, params)
	var out []Resource
	for _, id := range t.order {
		raw := t.resources[id]
		if raw.Condition != "" {
			ok, err := sc.namedCondition(raw.Condition)
			if err != nil {
				return out, fmt.Errorf("%s: Condition: %w", id, err)
			}
			if !ok {
				continue
			}
		}
		spec, err := t.spec(sc, id, raw)
		if err != nil {
			return out, fmt.Errorf("%s (%s): %w", id, raw.Type, err)
		}
		r, err := visit(id, spec)
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
	}
	return nil, fmt.Errorf("type %s is not created here", raw.Type)
}
