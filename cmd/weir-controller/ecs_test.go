package main

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	ec2 "github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	awsecs "github.com/aws/aws-sdk-go-v2/service/ecs"
	ecstypes "github.com/aws/aws-sdk-go-v2/service/ecs/types"

	"github.com/weirstream/weir/core/job"
	"github.com/weirstream/weir/infra/awstest"
	"github.com/weirstream/weir/infra/dynamo"
	"github.com/weirstream/weir/infra/resources"
	"github.com/weirstream/weir/infra/resources/resourcestest"
)

// ecsFlags creates a VPC, a cluster and a worker task definition on the
// emulator and returns the controller flags that use them, and the
// cluster.
func ecsFlags(t *testing.T, cfg aws.Config) ([]string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ec := ec2.NewFromConfig(cfg)
	vpc, err := ec.CreateVpc(ctx, &ec2.CreateVpcInput{CidrBlock: aws.String("10.30.0.0/16")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ec.ModifyVpcAttribute(ctx, &ec2.ModifyVpcAttributeInput{VpcId: vpc.Vpc.VpcId, EnableDnsHostnames: &ec2types.AttributeBooleanValue{Value: aws.Bool(true)}}); err != nil {
		t.Fatal(err)
	}
	subnet, err := ec.CreateSubnet(ctx, &ec2.CreateSubnetInput{VpcId: vpc.Vpc.VpcId, CidrBlock: aws.String("10.30.1.0/24")})
	if err != nil {
		t.Fatal(err)
	}
	sg, err := ec.CreateSecurityGroup(ctx, &ec2.CreateSecurityGroupInput{VpcId: vpc.Vpc.VpcId, GroupName: aws.String(awstest.Name(t, "workers")), Description: aws.String("weir workers")})
	if err != nil {
		t.Fatal(err)
	}
	api := awsecs.NewFromConfig(cfg)
	cluster, family := awstest.Name(t, "cluster"), awstest.Name(t, "worker")
	if _, err := api.CreateCluster(ctx, &awsecs.CreateClusterInput{ClusterName: &cluster}); err != nil {
		t.Fatal(err)
	}
	td, err := api.RegisterTaskDefinition(ctx, &awsecs.RegisterTaskDefinitionInput{
		Family: &family, NetworkMode: ecstypes.NetworkModeAwsvpc, Cpu: aws.String("256"), Memory: aws.String("512"),
		RequiresCompatibilities: []ecstypes.Compatibility{ecstypes.CompatibilityFargate},
		ContainerDefinitions: []ecstypes.ContainerDefinition{{
			Name: aws.String("worker"), Image: aws.String("weir/simworker:latest"), Cpu: 256, Memory: aws.Int32(512),
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if list, err := api.ListTasks(ctx, &awsecs.ListTasksInput{Cluster: &cluster}); err == nil {
			for _, arn := range list.TaskArns {
				_, _ = api.StopTask(ctx, &awsecs.StopTaskInput{Cluster: &cluster, Task: aws.String(arn)})
			}
		}
		_, _ = api.DeregisterTaskDefinition(ctx, &awsecs.DeregisterTaskDefinitionInput{TaskDefinition: td.TaskDefinition.TaskDefinitionArn})
		_, _ = api.DeleteCluster(ctx, &awsecs.DeleteClusterInput{Cluster: &cluster})
		_, _ = ec.DeleteSecurityGroup(ctx, &ec2.DeleteSecurityGroupInput{GroupId: sg.GroupId})
		_, _ = ec.DeleteSubnet(ctx, &ec2.DeleteSubnetInput{SubnetId: subnet.Subnet.SubnetId})
		_, _ = ec.DeleteVpc(ctx, &ec2.DeleteVpcInput{VpcId: vpc.Vpc.VpcId})
	})
	return []string{"--launcher", "ecs", "--ecs-cluster", cluster, "--ecs-task-definition", family,
		"--ecs-subnets", aws.ToString(subnet.Subnet.SubnetId), "--ecs-security-groups", aws.ToString(sg.GroupId)}, cluster
}

func TestTheLeaderRunsWorkerTasksOnECS(t *testing.T) {
	cfg := awstest.Config(t)
	stack := resourcestest.ForTest(t, cfg)
	env := stack.Env()
	flags, cluster := ecsFlags(t, cfg)
	st, err := dynamo.NewStore(dynamo.NewClient(cfg), env[resources.EnvJobsTable])
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()

	// A container the task definition lacks stops start-up.
	bin := binary(t)
	bad := exec.CommandContext(ctx, bin, append(flags, "--ecs-container", "app", "--health-addr", "127.0.0.1:0")...)
	bad.Env = envList(env)
	out, err := bad.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != exitFailure || !strings.Contains(string(out), `no container "app"`) {
		t.Fatalf("with a wrong container: %v\n%s", err, out)
	}

	if _, err := st.PutConfig(ctx, job.Config{
		JobID: "clicks",
		Spec: job.Spec{
			Operators:      []job.Operator{{ID: "source", Parallelism: 2, Source: true}},
			SlotsPerWorker: 1, Program: "demo",
		},
	}.WithDefaults()); err != nil {
		t.Fatal(err)
	}
	c := start(t, env, append(flags, append([]string{"--lease-owner", "ctl-a", "--health-addr", "127.0.0.1:0", "--poll-interval", "200ms"}, quickLease...)...)...)
	waitReady(t, c.healthAddr(), "leader", 10*time.Second)

	api := awsecs.NewFromConfig(cfg)
	deadline := time.Now().Add(15 * time.Second)
	var arns []string
	for len(arns) < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("%d worker tasks after 15 s, want 2", len(arns))
		}
		time.Sleep(100 * time.Millisecond)
		list, err := api.ListTasks(ctx, &awsecs.ListTasksInput{Cluster: &cluster, StartedBy: aws.String("weir/clicks")})
		if err != nil {
			t.Fatal(err)
		}
		arns = list.TaskArns
	}
	d, err := api.DescribeTasks(ctx, &awsecs.DescribeTasksInput{Cluster: &cluster, Tasks: arns})
	if err != nil {
		t.Fatal(err)
	}
	for _, task := range d.Tasks {
		got := map[string]string{}
		for _, kv := range task.Overrides.ContainerOverrides[0].Environment {
			got[aws.ToString(kv.Name)] = aws.ToString(kv.Value)
		}
		if got["WEIR_JOB_ID"] != "clicks" || got["WEIR_RUN_ID"] != "1" ||
			got[resources.EnvWorkerQueueURL] != env[resources.EnvWorkerQueueURL] || got[resources.EnvJobsTable] != env[resources.EnvJobsTable] {
			t.Errorf("task environment %v: want job clicks, run 1 and the stack's queue and table", got)
		}
	}
	c.sigterm()
}

func envList(extra map[string]string) []string {
	out := os.Environ()
	for k, v := range extra {
		out = append(out, k+"="+v)
	}
	return out
}
