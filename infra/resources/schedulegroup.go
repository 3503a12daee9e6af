package resources

import (
	"context"
	"errors"
	"fmt"
	"regexp"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/scheduler"
	"github.com/aws/aws-sdk-go-v2/service/scheduler/types"
	cfn "github.com/awslabs/goformation/v7/cloudformation/scheduler"
)

var scheduleGroupNameRE = regexp.MustCompile(`^[0-9a-zA-Z-_.]{1,64}$`)

// scheduleGroupSpec is a schedule group's template properties.
type scheduleGroupSpec struct {
	name string
}

func newScheduleGroupSpec(stackName, logicalID string, props *cfn.ScheduleGroup) (*scheduleGroupSpec, error) {
	name := stackName + "-" + logicalID
	if props.Name != nil {
		name = *props.Name
	}
	if !scheduleGroupNameRE.MatchString(name) {
		return nil, fmt.Errorf("schedule group name %q is not valid: 1 to 64 letters, digits, '-', '_' or '.'", name)
	}
	if name == "default" {
		return nil, errors.New(`schedule group name "default" is Scheduler's own group: name weir's group after the stack`)
	}
	return &scheduleGroupSpec{name: name}, nil
}

// ensureScheduleGroup creates the group, or reuses it if it exists. It
// looks first: the emulator creates a group twice instead of refusing.
func ensureScheduleGroup(ctx context.Context, client *scheduler.Client, logicalID string, spec *scheduleGroupSpec) (Resource, error) {
	r := Resource{LogicalID: logicalID, Type: TypeScheduleGroup, Name: spec.name}
	arn, err := scheduleGroupARN(ctx, client, spec.name)
	if err != nil || arn != "" {
		r.ARN = arn
		return r, err
	}
	out, err := client.CreateScheduleGroup(ctx, &scheduler.CreateScheduleGroupInput{Name: aws.String(spec.name)})
	if err == nil {
		r.ARN, r.Created = aws.ToString(out.ScheduleGroupArn), true
		return r, nil
	}
	if _, exists := errors.AsType[*types.ConflictException](err); !exists {
		return r, fmt.Errorf("create schedule group %s: %w", spec.name, err)
	}
	r.ARN, err = scheduleGroupARN(ctx, client, spec.name)
	return r, err
}

func scheduleGroupARN(ctx context.Context, client *scheduler.Client, name string) (string, error) {
	got, err := client.GetScheduleGroup(ctx, &scheduler.GetScheduleGroupInput{Name: aws.String(name)})
	if _, missing := errors.AsType[*types.ResourceNotFoundException](err); missing {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read schedule group %s: %w", name, err)
	}
	return aws.ToString(got.Arn), nil
}

// deleteScheduleGroup deletes the group and the schedules in it; a group
// that is already gone is not an error. It looks first: the emulator
// answers a delete of a missing group with a server error.
func deleteScheduleGroup(ctx context.Context, client *scheduler.Client, name string) error {
	arn, err := scheduleGroupARN(ctx, client, name)
	if err != nil || arn == "" {
		return err
	}
	_, err = client.DeleteScheduleGroup(ctx, &scheduler.DeleteScheduleGroupInput{Name: aws.String(name)})
	if _, missing := errors.AsType[*types.ResourceNotFoundException](err); missing {
		return nil
	}
	if err != nil {
		return fmt.Errorf("delete schedule group %s: %w", name, err)
	}
	return nil
}
