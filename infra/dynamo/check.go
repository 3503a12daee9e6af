package dynamo

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// keyPart is one element of a key schema as the adapters expect it.
type keyPart struct {
	name    string
	keyType types.KeyType
	attr    types.ScalarAttributeType
}

var (
	jobsKeys = []keyPart{
		{attrPK, types.KeyTypeHash, types.ScalarAttributeTypeS},
		{attrSK, types.KeyTypeRange, types.ScalarAttributeTypeS},
	}
	activeIndexKeys = []keyPart{
		{attrActive, types.KeyTypeHash, types.ScalarAttributeTypeS},
		{attrPK, types.KeyTypeRange, types.ScalarAttributeTypeS},
	}
	leaseKeys = []keyPart{
		{attrLeaseName, types.KeyTypeHash, types.ScalarAttributeTypeS},
	}
)

// Check verifies, with one DescribeTable, that the Jobs table is what the
// store relies on: the pk/sk key, and the active-jobs index keyed on
// active/pk that carries `version`. Run it at start-up so a stack from an
// older template fails with a clear message instead of odd query errors.
func (s *Store) Check(ctx context.Context) error {
	desc, err := describe(ctx, s.db, s.table)
	if err != nil {
		return err
	}
	problems := checkKeys("table", desc.KeySchema, jobsKeys, desc.AttributeDefinitions)
	i := slices.IndexFunc(desc.GlobalSecondaryIndexes, func(g types.GlobalSecondaryIndexDescription) bool {
		return aws.ToString(g.IndexName) == activeIndex
	})
	if i < 0 {
		problems = append(problems, fmt.Sprintf("it has no global secondary index %q", activeIndex))
	} else {
		g := desc.GlobalSecondaryIndexes[i]
		problems = append(problems, checkKeys("index "+activeIndex, g.KeySchema, activeIndexKeys, desc.AttributeDefinitions)...)
		if !projects(g.Projection, attrVersion) {
			problems = append(problems, fmt.Sprintf("index %s does not project %q (use INCLUDE [%s] or ALL)", activeIndex, attrVersion, attrVersion))
		}
		if g.IndexStatus != "" && g.IndexStatus != types.IndexStatusActive && g.IndexStatus != types.IndexStatusUpdating {
			problems = append(problems, fmt.Sprintf("index %s is %s, not ACTIVE: wait for it to finish", activeIndex, g.IndexStatus))
		}
	}
	return tableProblems(s.table, problems)
}

func describe(ctx context.Context, db *dynamodb.Client, table string) (*types.TableDescription, error) {
	out, err := db.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: &table})
	var nf *types.ResourceNotFoundException
	if errors.As(err, &nf) {
		return nil, fmt.Errorf("table %s does not exist: deploy the stack (template.yaml) or check the table name", table)
	}
	if err != nil {
		return nil, fmt.Errorf("describe table %s: %w", table, err)
	}
	return out.Table, nil
}

func checkKeys(where string, got []types.KeySchemaElement, want []keyPart, defs []types.AttributeDefinition) []string {
	var problems []string
	if len(got) != len(want) {
		problems = append(problems, fmt.Sprintf("%s key has %d parts, want %s", where, len(got), describeKeys(want)))
		return problems
	}
	for i, w := range want {
		g := got[i]
		if aws.ToString(g.AttributeName) != w.name || g.KeyType != w.keyType {
			problems = append(problems, fmt.Sprintf("%s key is %s %s at position %d, want %s", where, aws.ToString(g.AttributeName), g.KeyType, i+1, describeKeys(want)))
			continue
		}
		j := slices.IndexFunc(defs, func(d types.AttributeDefinition) bool { return aws.ToString(d.AttributeName) == w.name })
		if j < 0 || defs[j].AttributeType != w.attr {
			problems = append(problems, fmt.Sprintf("%s key attribute %s is not of type %s", where, w.name, w.attr))
		}
	}
	return problems
}

func describeKeys(ks []keyPart) string {
	s := ""
	for i, k := range ks {
		if i > 0 {
			s += ", "
		}
		s += fmt.Sprintf("%s (%s, %s)", k.name, k.attr, k.keyType)
	}
	return s
}

func projects(p *types.Projection, attr string) bool {
	if p == nil {
		return false
	}
	switch p.ProjectionType {
	case types.ProjectionTypeAll:
		return true
	case types.ProjectionTypeInclude:
		return slices.Contains(p.NonKeyAttributes, attr)
	}
	return false
}

func tableProblems(table string, problems []string) error {
	if len(problems) == 0 {
		return nil
	}
	msg := fmt.Sprintf("table %s does not match the data model (template.yaml):", table)
	for _, p := range problems {
		msg += "\n  - " + p
	}
	return errors.New(msg)
}
