package resources

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	cfn "github.com/awslabs/goformation/v7/cloudformation/dynamodb"
)

// waitLimit bounds how long Create and Delete wait for a table to become
// active or to disappear; on AWS that takes seconds, in an emulator none.
const waitLimit = 5 * time.Minute

var tableNameRE = regexp.MustCompile(`^[a-zA-Z0-9_.-]{3,255}$`)

// tableSpec is a table's template properties, resolved and typed.
type tableSpec struct {
	name  string
	props *cfn.Table
}

func newTableSpec(stackName, logicalID string, props *cfn.Table) (*tableSpec, error) {
	// Without a TableName CloudFormation makes one up; locally the name must
	// be the same on every run so that creating again finds the table.
	name := stackName + "-" + logicalID
	if props.TableName != nil {
		name = *props.TableName
	}
	if !tableNameRE.MatchString(name) {
		return nil, fmt.Errorf("table name %q is not valid: 3 to 255 letters, digits, '_', '-' or '.'", name)
	}
	for field, set := range map[string]bool{
		"ContributorInsightsSpecification": props.ContributorInsightsSpecification != nil,
		"ImportSourceSpecification":        props.ImportSourceSpecification != nil,
		"KinesisStreamSpecification":       props.KinesisStreamSpecification != nil,
	} {
		if set {
			return nil, fmt.Errorf("property %s is not supported outside CloudFormation; deploy this table with `sam deploy`", field)
		}
	}
	for _, g := range props.GlobalSecondaryIndexes {
		if g.ContributorInsightsSpecification != nil {
			return nil, fmt.Errorf("index %s: ContributorInsightsSpecification is not supported outside CloudFormation", g.IndexName)
		}
		if g.Projection == nil {
			return nil, fmt.Errorf("index %s has no Projection", g.IndexName)
		}
	}
	if len(props.KeySchema) == 0 {
		return nil, errors.New("KeySchema is empty")
	}
	return &tableSpec{name: name, props: props}, nil
}

func (s *tableSpec) createInput() (*dynamodb.CreateTableInput, error) {
	p := s.props
	in := &dynamodb.CreateTableInput{
		TableName:                 aws.String(s.name),
		KeySchema:                 keySchema(p.KeySchema),
		BillingMode:               types.BillingModeProvisioned, // CloudFormation's default
		DeletionProtectionEnabled: p.DeletionProtectionEnabled,
	}
	if p.BillingMode != nil {
		in.BillingMode = types.BillingMode(*p.BillingMode)
	}
	for _, a := range p.AttributeDefinitions {
		in.AttributeDefinitions = append(in.AttributeDefinitions, types.AttributeDefinition{
			AttributeName: aws.String(a.AttributeName),
			AttributeType: types.ScalarAttributeType(a.AttributeType),
		})
	}
	in.ProvisionedThroughput = throughput(p.ProvisionedThroughput)
	for _, g := range p.GlobalSecondaryIndexes {
		in.GlobalSecondaryIndexes = append(in.GlobalSecondaryIndexes, types.GlobalSecondaryIndex{
			IndexName:             aws.String(g.IndexName),
			KeySchema:             keySchema(g.KeySchema),
			Projection:            projection(g.Projection),
			ProvisionedThroughput: throughput(g.ProvisionedThroughput),
		})
	}
	for _, l := range p.LocalSecondaryIndexes {
		in.LocalSecondaryIndexes = append(in.LocalSecondaryIndexes, types.LocalSecondaryIndex{
			IndexName:  aws.String(l.IndexName),
			KeySchema:  keySchema(l.KeySchema),
			Projection: projection(l.Projection),
		})
	}
	if sse := p.SSESpecification; sse != nil {
		in.SSESpecification = &types.SSESpecification{
			Enabled:        aws.Bool(sse.SSEEnabled),
			KMSMasterKeyId: sse.KMSMasterKeyId,
		}
		if sse.SSEType != nil {
			in.SSESpecification.SSEType = types.SSEType(*sse.SSEType)
		}
	}
	if st := p.StreamSpecification; st != nil {
		in.StreamSpecification = &types.StreamSpecification{
			StreamEnabled:  aws.Bool(true),
			StreamViewType: types.StreamViewType(st.StreamViewType),
		}
	}
	if p.TableClass != nil {
		in.TableClass = types.TableClass(*p.TableClass)
	}
	if rp := p.ResourcePolicy; rp != nil {
		doc, err := jsonText(rp.PolicyDocument)
		if err != nil {
			return nil, fmt.Errorf("ResourcePolicy.PolicyDocument: %w", err)
		}
		in.ResourcePolicy = aws.String(doc)
	}
	for _, t := range p.Tags {
		in.Tags = append(in.Tags, types.Tag{Key: aws.String(t.Key), Value: aws.String(t.Value)})
	}
	return in, nil
}

func keySchema(ks []cfn.Table_KeySchema) []types.KeySchemaElement {
	out := make([]types.KeySchemaElement, len(ks))
	for i, k := range ks {
		out[i] = types.KeySchemaElement{AttributeName: aws.String(k.AttributeName), KeyType: types.KeyType(k.KeyType)}
	}
	return out
}

func throughput(t *cfn.Table_ProvisionedThroughput) *types.ProvisionedThroughput {
	if t == nil {
		return nil
	}
	return &types.ProvisionedThroughput{
		ReadCapacityUnits:  aws.Int64(int64(t.ReadCapacityUnits)),
		WriteCapacityUnits: aws.Int64(int64(t.WriteCapacityUnits)),
	}
}

func projection(p *cfn.Table_Projection) *types.Projection {
	out := &types.Projection{NonKeyAttributes: p.NonKeyAttributes}
	if p.ProjectionType != nil {
		out.ProjectionType = types.ProjectionType(*p.ProjectionType)
	}
	return out
}

// jsonText returns v as JSON text; a string is taken to be JSON already.
func jsonText(v any) (string, error) {
	if s, ok := v.(string); ok {
		return s, nil
	}
	b, err := json.Marshal(v)
	return string(b), err
}

// ensureTable creates the table, or finds the existing one and checks that
// its keys and indexes are the template's; then it applies TTL and
// point-in-time recovery, which CreateTable cannot set.
func ensureTable(ctx context.Context, client *dynamodb.Client, logicalID string, spec *tableSpec) (Resource, error) {
	res := Resource{LogicalID: logicalID, Type: TypeTable, Name: spec.name}
	desc, err := describeTable(ctx, client, spec.name)
	if err != nil {
		return res, err
	}
	if desc != nil && desc.TableStatus == types.TableStatusDeleting {
		// A delete-then-create (on AWS deletes take seconds): let the old
		// table go, then make a fresh one.
		if err := waitTableGone(ctx, client, spec.name); err != nil {
			return res, err
		}
		desc = nil
	}
	if desc == nil {
		in, err := spec.createInput()
		if err != nil {
			return res, err
		}
		out, err := client.CreateTable(ctx, in)
		var inUse *types.ResourceInUseException
		switch {
		case errors.As(err, &inUse):
			// Someone else created it between our look and our create.
		case err != nil:
			return res, fmt.Errorf("create table %s: %w", spec.name, err)
		default:
			res.Created = true
			desc = out.TableDescription
		}
	}
	if !res.Created {
		if desc == nil {
			if desc, err = describeTable(ctx, client, spec.name); err != nil {
				return res, err
			}
		}
		if err := spec.matches(desc); err != nil {
			return res, err
		}
	}
	if desc.TableStatus != types.TableStatusActive {
		waiter := dynamodb.NewTableExistsWaiter(client, func(o *dynamodb.TableExistsWaiterOptions) {
			o.MinDelay = time.Second
			o.MaxDelay = 10 * time.Second
		})
		out, err := waiter.WaitForOutput(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(spec.name)}, waitLimit)
		if err != nil {
			return res, fmt.Errorf("wait for table %s to become active: %w", spec.name, err)
		}
		desc = out.Table
	}
	res.ARN = aws.ToString(desc.TableArn)
	res.StreamARN = aws.ToString(desc.LatestStreamArn)
	if err := spec.applyTTL(ctx, client); err != nil {
		return res, err
	}
	if err := spec.applyPITR(ctx, client); err != nil {
		return res, err
	}
	return res, nil
}

// describeTable returns nil, nil when the table does not exist.
func describeTable(ctx context.Context, client *dynamodb.Client, name string) (*types.TableDescription, error) {
	out, err := client.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(name)})
	var notFound *types.ResourceNotFoundException
	if errors.As(err, &notFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("describe table %s: %w", name, err)
	}
	return out.Table, nil
}

// matches reports how an existing table differs from the template in what
// cannot be changed in place: the key schema, the key attributes' types and
// the declared indexes (their keys and projections).
func (s *tableSpec) matches(desc *types.TableDescription) error {
	gotTypes := map[string]string{}
	for _, a := range desc.AttributeDefinitions {
		gotTypes[aws.ToString(a.AttributeName)] = string(a.AttributeType)
	}
	wantTypes := map[string]string{}
	for _, a := range s.props.AttributeDefinitions {
		wantTypes[a.AttributeName] = a.AttributeType
	}
	var diffs []string
	keyDiff := func(what string, want []cfn.Table_KeySchema, got []types.KeySchemaElement) {
		w, g := describeKeys(want, wantTypes), describeGotKeys(got, gotTypes)
		if w != g {
			diffs = append(diffs, fmt.Sprintf("%s is %s, the template wants %s", what, g, w))
		}
	}
	keyDiff("key schema", s.props.KeySchema, desc.KeySchema)
	for _, want := range s.props.GlobalSecondaryIndexes {
		i := slices.IndexFunc(desc.GlobalSecondaryIndexes, func(g types.GlobalSecondaryIndexDescription) bool { return aws.ToString(g.IndexName) == want.IndexName })
		if i < 0 {
			diffs = append(diffs, fmt.Sprintf("index %s is missing", want.IndexName))
			continue
		}
		got := desc.GlobalSecondaryIndexes[i]
		keyDiff("index "+want.IndexName+" key schema", want.KeySchema, got.KeySchema)
		if w, g := describeProjection(projection(want.Projection)), describeProjection(got.Projection); w != g {
			diffs = append(diffs, fmt.Sprintf("index %s projects %s, the template wants %s", want.IndexName, g, w))
		}
	}
	if len(diffs) > 0 {
		return fmt.Errorf("%w: table %s: %s; delete the table or use another stack name", ErrMismatch, s.name, strings.Join(diffs, "; "))
	}
	return nil
}

func describeKeys(ks []cfn.Table_KeySchema, attrTypes map[string]string) string {
	parts := make([]string, len(ks))
	for i, k := range ks {
		parts[i] = fmt.Sprintf("%s %s (%s)", k.AttributeName, k.KeyType, attrTypes[k.AttributeName])
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

func describeGotKeys(ks []types.KeySchemaElement, attrTypes map[string]string) string {
	parts := make([]string, len(ks))
	for i, k := range ks {
		name := aws.ToString(k.AttributeName)
		parts[i] = fmt.Sprintf("%s %s (%s)", name, k.KeyType, attrTypes[name])
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

func describeProjection(p *types.Projection) string {
	if p == nil {
		return "nothing"
	}
	typ := p.ProjectionType
	if typ == "" {
		typ = types.ProjectionTypeKeysOnly // DynamoDB's default
	}
	attrs := slices.Clone(p.NonKeyAttributes)
	slices.Sort(attrs)
	if len(attrs) == 0 {
		return string(typ)
	}
	return fmt.Sprintf("%s %v", typ, attrs)
}

// applyTTL turns on the template's TTL attribute unless it already is.
// Turning TTL off, or moving it to another attribute, is left to an
// operator: DynamoDB allows one such change per hour.
func (s *tableSpec) applyTTL(ctx context.Context, client *dynamodb.Client) error {
	ttl := s.props.TimeToLiveSpecification
	if ttl == nil || !ttl.Enabled {
		return nil
	}
	attr := aws.ToString(ttl.AttributeName)
	if attr == "" {
		return errors.New("TimeToLiveSpecification is enabled but names no AttributeName")
	}
	cur, err := client.DescribeTimeToLive(ctx, &dynamodb.DescribeTimeToLiveInput{TableName: aws.String(s.name)})
	if err != nil {
		return fmt.Errorf("describe TTL of table %s: %w", s.name, err)
	}
	if d := cur.TimeToLiveDescription; d != nil {
		switch d.TimeToLiveStatus {
		case types.TimeToLiveStatusEnabled, types.TimeToLiveStatusEnabling:
			if got := aws.ToString(d.AttributeName); got != attr {
				return fmt.Errorf("%w: table %s has TTL on attribute %q, the template wants %q", ErrMismatch, s.name, got, attr)
			}
			return nil
		}
	}
	_, err = client.UpdateTimeToLive(ctx, &dynamodb.UpdateTimeToLiveInput{
		TableName:               aws.String(s.name),
		TimeToLiveSpecification: &types.TimeToLiveSpecification{AttributeName: aws.String(attr), Enabled: aws.Bool(true)},
	})
	if err != nil {
		return fmt.Errorf("enable TTL on table %s: %w", s.name, err)
	}
	return nil
}

// applyPITR turns on point-in-time recovery when the template asks for it.
func (s *tableSpec) applyPITR(ctx context.Context, client *dynamodb.Client) error {
	p := s.props.PointInTimeRecoverySpecification
	if p == nil || !aws.ToBool(p.PointInTimeRecoveryEnabled) {
		return nil
	}
	cur, err := client.DescribeContinuousBackups(ctx, &dynamodb.DescribeContinuousBackupsInput{TableName: aws.String(s.name)})
	if err != nil {
		return fmt.Errorf("describe backups of table %s: %w", s.name, err)
	}
	if d := cur.ContinuousBackupsDescription; d != nil && d.PointInTimeRecoveryDescription != nil &&
		d.PointInTimeRecoveryDescription.PointInTimeRecoveryStatus == types.PointInTimeRecoveryStatusEnabled {
		return nil
	}
	_, err = client.UpdateContinuousBackups(ctx, &dynamodb.UpdateContinuousBackupsInput{
		TableName:                        aws.String(s.name),
		PointInTimeRecoverySpecification: &types.PointInTimeRecoverySpecification{PointInTimeRecoveryEnabled: aws.Bool(true)},
	})
	if err != nil {
		return fmt.Errorf("enable point-in-time recovery on table %s: %w", s.name, err)
	}
	return nil
}

// deleteTable deletes the table and waits until it is gone, so the same
// name can be created again straight away. A missing table is not an error.
func deleteTable(ctx context.Context, client *dynamodb.Client, name string) error {
	_, err := client.DeleteTable(ctx, &dynamodb.DeleteTableInput{TableName: aws.String(name)})
	var notFound *types.ResourceNotFoundException
	if errors.As(err, &notFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("delete table %s: %w", name, err)
	}
	return waitTableGone(ctx, client, name)
}

func waitTableGone(ctx context.Context, client *dynamodb.Client, name string) error {
	waiter := dynamodb.NewTableNotExistsWaiter(client, func(o *dynamodb.TableNotExistsWaiterOptions) {
		o.MinDelay = time.Second
		o.MaxDelay = 10 * time.Second
	})
	if err := waiter.Wait(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(name)}, waitLimit); err != nil {
		return fmt.Errorf("wait for table %s to be deleted: %w", name, err)
	}
	return nil
}
